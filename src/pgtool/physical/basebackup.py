"""`pgtool basebackup`: pg_basebackup into a dated directory, checked, recorded; retention, WAL pruning.

One run:
1. takes a lock on DEST so two runs never overlap;
2. asks the server (over a replication connection, so a role with only REPLICATION LOGIN suffices) for
   its version, system identifier, timeline and WAL segment size;
3. runs pg_basebackup (tar format, WAL streamed alongside so the backup is self-contained, fast
   checkpoint) into `DEST/.incomplete-<stamp>-<pid>/`;
4. checks it (`base_verify`), writes `pgtool-basebackup.json`, fsyncs, renames to `DEST/<stamp>/`;
5. applies retention and, with an archive directory, prunes archived WAL (`base_retention`).

With `incremental`, pg_basebackup runs with `--incremental=<manifest>` of the newest backup
(`base_incremental`), and the record names its parent and chain.

Compression: `auto` (the default) asks the server to compress with lz4, then zstd, and falls back to
none if the server was built without them; server-side compression is several times faster than
client-side gzip. `gzip` compresses on the client.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pgtool.config import redact_dsn
from pgtool.durable_write import fsync_path
from pgtool.errors import ExternalCommandError, LockBusyError, OperationError, UsageError
from pgtool.obs.logging import get_logger
from pgtool.physical import base_catalog, base_guard, base_incremental, base_retention, base_verify
from pgtool.physical.backup_run import BackupRun, BaseBackupResult, finish
from pgtool.physical.base_catalog import INCOMPLETE_PREFIX, LOCK_FILE, METADATA_FILE, STAMP_FORMAT
from pgtool.physical.base_progress import TerminalProgress
from pgtool.wal.listing import parse_lsn, segment_name, segno_of_lsn

COMPRESS_CHOICES = ("auto", "server-lz4", "server-zstd", "gzip", "none")
# What `auto` tries, in order, on PostgreSQL 15+ (older servers cannot compress server-side).
AUTO_ORDER = ("server-lz4", "server-zstd", "none")


@dataclass
class ServerFacts:
    system_identifier: str
    timeline: int
    server_version: str
    server_version_num: int
    wal_segment_size: int
    wal_position: int = 0  # IDENTIFY_SYSTEM's xlogpos: how far this server has written


def _size_setting(text: str) -> int:
    units = {"kB": 1024, "MB": 1024**2, "GB": 1024**3}
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(text[: -len(unit)]) * factor
    return int(text)


def server_facts(dsn: str) -> ServerFacts:
    """Identify the server over a replication connection (IDENTIFY_SYSTEM, SHOW wal_segment_size).

    A replication connection is what pg_basebackup itself needs, so this works for a dedicated role
    with only REPLICATION LOGIN, and fails early with a clear message if replication is not allowed.
    """
    import psycopg

    from pgtool.pg.conn import connect, with_params

    # A walsender runs no SQL (so nothing to pin): only replication commands, which name no function.
    conn = connect(with_params(dsn, replication="true") if dsn else "replication=true", pin="off")
    with conn:
        cur = psycopg.ClientCursor(conn)  # the walsender speaks only the simple query protocol
        cur.execute("IDENTIFY_SYSTEM")
        row = cur.fetchone()
        assert row is not None
        sysid, tli = _text(row[0]), int(_text(row[1]))
        xlogpos = parse_lsn(_text(row[2]))
        cur.execute("SHOW wal_segment_size")
        seg_row = cur.fetchone()
        assert seg_row is not None
        seg_size = _size_setting(_text(seg_row[0]))
        version_num = conn.info.server_version
        version = conn.info.parameter_status("server_version") or str(version_num)
    return ServerFacts(sysid, tli, _text(version).split()[0], version_num, seg_size, xlogpos)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def server_clock(dsn: str) -> tuple[datetime, int | None, str | None]:
    """The server's clock, next transaction id and bootstrap superuser, through an ordinary connection.

    A REPLICATION-only role may not be allowed to open one (pg_hba often lists it for `replication`
    only): then the local clock stands in and next_xid is unknown.
    """
    from pgtool.pg.conn import connect

    try:
        with connect(dsn, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT pg_catalog.clock_timestamp(), "
                "pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot())::text::bigint, "
                "(SELECT rolname FROM pg_catalog.pg_roles WHERE oid = 10)"
            ).fetchone()
            assert row is not None
            return row[0].astimezone(UTC), int(row[1]), row[2]
    except Exception as exc:  # any failure (connect, permission): fall back to our clock
        get_logger().warning("using the local clock for backup times", reason=redact_dsn(str(exc)))
        return datetime.now(UTC), None, None


@contextlib.contextmanager
def dest_lock(dest: Path) -> Iterator[None]:
    """An exclusive lock on DEST for the run (released by the kernel if we die)."""
    path = dest / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockBusyError(
                f"another pgtool basebackup is running into {dest}",
                hint="wait for it to finish; runs must not overlap",
            ) from None
        yield
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for root, _dirs, files in os.walk(path):
        for name in files:
            fsync_path(os.path.join(root, name))
    fsync_path(path, directory=True)


def _new_stamp(dest: Path) -> str:
    """A UTC timestamp name not used yet in DEST (waits for the next second if needed)."""
    while True:
        stamp = datetime.now(UTC).strftime(STAMP_FORMAT)
        if not (dest / stamp).exists():
            return stamp
        time.sleep(0.2)


def pg_basebackup_argv(
    pg_basebackup: str,
    conninfo: str,
    target: str,
    label: str,
    compress: str,
    incremental_from: Path | None = None,
    *,
    wal_method: str = "stream",
) -> list[str]:
    """pg_basebackup's argv: tar format, fast checkpoint, into `target` ("-": one tar on stdout)."""
    argv = [
        pg_basebackup,
        *(["--dbname", conninfo] if conninfo else []),
        "--pgdata",
        target,
        "--format=tar",
        # stream (the default): WAL arrives through a second connection while the copy runs, so a long
        # backup cannot fail because the server recycled a segment it still needed (as `fetch` can).
        f"--wal-method={wal_method}",
        "--checkpoint=fast",
        "--label",
        label,
        "--no-password",
        *([f"--incremental={incremental_from}"] if incremental_from is not None else []),
    ]
    if compress == "gzip":
        argv.append("--compress=client-gzip")
    elif compress.startswith(("server-", "client-")):
        argv.append(f"--compress={compress}")
    return argv


def _run_pg_basebackup(
    pg_basebackup: str,
    conninfo: str,
    env: dict[str, str],
    target: Path,
    label: str,
    compress: str,
    incremental_from: Path | None = None,
) -> None:
    from pgtool.pg import command

    argv = pg_basebackup_argv(pg_basebackup, conninfo, str(target), label, compress, incremental_from)
    progress = TerminalProgress()
    try:
        command.run(argv + progress.argv, env=env, what="pg_basebackup", on_progress=progress.line)
    finally:
        progress.end()


def take_base_backup(
    dsn: str,
    dest: Path,
    *,
    archive_dir: Path | None = None,
    run: BackupRun | None = None,
) -> BaseBackupResult:
    """Take one base backup into `dest/<UTC stamp>/`, then retention and WAL pruning (options: `run`).

    Raises UsageError for bad options, ConnectError when the server cannot be reached,
    OperationError (or ExternalCommandError) when the backup or its check fails; a failed backup
    leaves no complete-looking directory behind.
    """
    if archive_dir is not None and not Path(archive_dir).is_dir():
        raise UsageError(f"archive directory {archive_dir} does not exist")
    run = run or BackupRun()
    facts, tools = prepare(dsn, run)
    from pgtool.wal.archive import list_archive, read_system_id

    log = get_logger().bind(dest=str(dest))
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    backups = base_catalog.list_base_backups(dest)
    archive = None if archive_dir is None else str(archive_dir)
    try:
        archived_sysid = read_system_id(archive) if archive is not None else None
    except ValueError:
        archived_sysid = None
    base_guard.check_same_system(backups, str(dest), archived_sysid, archive, facts.system_identifier)
    files = list_archive(archive) if archive is not None else None
    base_guard.check_not_behind(backups, str(dest), files, archive, facts.timeline, facts.wal_position)
    parent = None
    if run.incremental:
        major = facts.server_version_num // 10000
        parent = base_incremental.choose_parent(
            dsn, facts.server_version, major, backups, fallback=run.fallback
        )

    from pgtool.pg.terminate import sigterm_raises

    # SIGTERM (a pod stop) must unwind, so the temporary directory is removed rather than left behind.
    with sigterm_raises(), dest_lock(dest):
        stamp = _new_stamp(dest)
        tmp = dest / f"{INCOMPLETE_PREFIX}{stamp}-{os.getpid()}"
        try:
            manifest = base_incremental.manifest_of(parent) if parent else None
            info = spool(dsn, facts, tools, tmp, stamp, run.compress, parent, manifest)
            final = dest / stamp
            os.rename(tmp, final)
            fsync_path(dest, directory=True)
            info.path = final
        except BaseException:
            _remove(tmp)
            raise
        log.info("base backup complete", backup=stamp, kind=info.kind, size_bytes=info.size_bytes)
        outcome = base_retention.apply_retention(
            dest, keep=run.keep, archive_dir=archive_dir, window=run.window
        )
    incomplete = [p.name for p in base_catalog.incomplete_entries(dest)]
    return finish(info, outcome, incomplete, run.report)


def prepare(dsn: str, run: BackupRun) -> tuple[ServerFacts, Any]:
    """Check the options and the server (UsageError, OperationError); its facts and client binaries."""
    keep, compress = run.keep, run.compress
    if keep < 1:
        raise UsageError(f"--keep must be at least 1 (got {keep})")
    if compress not in COMPRESS_CHOICES:
        raise UsageError(f"--compress must be one of {', '.join(COMPRESS_CHOICES)} (got {compress!r})")
    from pgtool.pg import binaries

    facts = server_facts(dsn)
    major = facts.server_version_num // 10000
    if major < 13:
        raise OperationError(
            f"PostgreSQL {facts.server_version} has no backup manifests; pgtool needs 13 or newer"
        )
    if compress.startswith("server-") and major < 15:
        raise UsageError(
            f"server-side compression needs PostgreSQL 15 or newer (server: {facts.server_version})"
        )
    return facts, binaries.for_server(major, run.pg_bindir)


def spool(
    dsn: str,
    facts: ServerFacts,
    tools: Any,
    tmp: Path,
    stamp: str,
    compress: str,
    parent: base_catalog.BaseBackupInfo | None = None,
    parent_manifest: Path | None = None,
) -> base_catalog.BaseBackupInfo:
    """Run pg_basebackup into `tmp`, check the result and write its metadata (fsynced); the caller
    removes `tmp` on failure. `tools`: the client binaries (`prepare`). parent, parent_manifest: take
    an incremental backup against that backup, whose manifest is that local file."""
    from pgtool.pg.command import libpq_args

    log = get_logger()
    major = facts.server_version_num // 10000
    pg_basebackup = tools.path("pg_basebackup")
    started = time.monotonic()
    start_time, _, _ = server_clock(dsn)
    choices = [compress] if compress != "auto" else list(AUTO_ORDER if major >= 15 else ("none",))
    used = ""
    with libpq_args(dsn) as (conninfo, env):
        for i, choice in enumerate(choices):
            try:
                label = f"pgtool {stamp}"
                _run_pg_basebackup(pg_basebackup, conninfo, env, tmp, label, choice, parent_manifest)
                used = choice
                break
            except ExternalCommandError as exc:
                unsupported = "does not support compression" in exc.stderr_tail
                if not unsupported or i == len(choices) - 1:
                    raise
                log.info("server cannot compress this way, trying the next", compression=choice)
                _remove(tmp)
    stop_time, next_xid, superuser = server_clock(dsn)
    check = base_verify.check_backup(tmp, tools, wal_segment_size=facts.wal_segment_size)
    files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.is_file()}
    info = describe(files, stamp, facts, check, used, (start_time, stop_time), next_xid, started)
    info.superuser = superuser
    base_incremental.record_chain(info, parent)
    (tmp / METADATA_FILE).write_text(info.to_json())
    _fsync_tree(tmp)
    return info


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def describe(
    files: dict[str, int],
    stamp: str,
    facts: ServerFacts,
    check: base_verify.CheckResult,
    compression: str,
    times: tuple[datetime, datetime],
    next_xid: int | None,
    started: float,
    wal_method: str = "stream",
) -> base_catalog.BaseBackupInfo:
    """The record of a checked backup made of `files` (name -> bytes); times: the server's clock
    before and after pg_basebackup (`server_clock`)."""
    from pgtool import __version__

    start_time, stop_time = times
    seg = facts.wal_segment_size
    start_lsn, stop_lsn = parse_lsn(check.start_lsn), parse_lsn(check.stop_lsn)
    if check.system_identifier and check.system_identifier != facts.system_identifier:
        raise OperationError(
            f"backup manifest names system {check.system_identifier}, "
            f"the server said {facts.system_identifier}"
        )
    return base_catalog.BaseBackupInfo(
        id=stamp,
        start_time=start_time.isoformat(),
        stop_time=max(stop_time, start_time).isoformat(),
        start_lsn=check.start_lsn,
        stop_lsn=check.stop_lsn,
        start_wal_file=segment_name(check.timeline, segno_of_lsn(start_lsn, seg), seg),
        stop_wal_file=segment_name(check.timeline, segno_of_lsn(stop_lsn, seg), seg),
        timeline=check.timeline,
        system_identifier=facts.system_identifier,
        server_version=facts.server_version,
        server_version_num=facts.server_version_num,
        wal_segment_size=seg,
        compression=compression,
        wal_method=wal_method,
        size_bytes=sum(files.values()),
        files=files,
        next_xid=next_xid,
        verified_with=check.method,
        duration_seconds=round(time.monotonic() - started, 3),
        tablespaces=check.tablespaces,
        pgtool_version=__version__,
    )
