"""`pgtool basebackup --repo URL`: a base backup streamed into the repository (or spooled locally once
when it cannot stream), checked before it is listed.

One run:
1. asks the server for its facts (`basebackup.prepare`) and applies the directory's safety checks
   (`base_guard`) to the repository: its WAL's recorded system identifier (`wal/system-identifier`)
   and timeline history objects, and its base backups;
2. streams: `pg_basebackup -D - --format=tar --wal-method=fetch` into `base/<stamp>/base.tar[.lz4|.zst|
   .gz]` (`repo_stream`: multipart, every file checked against the manifest on the way, committed only
   when everything passed), then `base/<stamp>/backup_manifest`, then the record
   `base/<stamp>/pgtool-basebackup.json` LAST: a backup is listed only once its record exists. A
   failure or SIGTERM abandons the multipart upload and deletes whatever of the stamp was written;
3. or, when it cannot stream (`repo_stream.cannot_stream`, `CannotStream`: server-side compression,
   tablespaces, WAL recycled before it was fetched; said in one log line), spools as before: runs
   pg_basebackup exactly as `--dest` does (WAL streamed alongside) into `<spool>/pgtool-basebackup-XXXX/
   <stamp>/` (`--spool-dir`, default $TMPDIR or /tmp), checks it (`base_verify`) and uploads it file by
   file, the record last (`repo_catalog.upload`);
4. removes the spool directory, always: after success, after a failure, and on SIGTERM
   (`sigterm_raises`);
5. applies retention and prunes the repository's WAL (`repo_retention`).

With `incremental`, the newest backup's `backup_manifest` object is downloaded (verified) into the
spool directory and pg_basebackup runs with `--incremental` against it (`base_incremental`).

Only SIGKILL (or a node loss) can leave something behind: an abandoned multipart upload (invisible;
S3 keeps its parts until a lifecycle rule aborts them) or objects of a stamp with no record. They are
never listed, so retention, status, recover and verify ignore them; later runs log them as a warning.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pgtool.errors import ExternalCommandError, PgtoolError, UsageError
from pgtool.obs.logging import get_logger
from pgtool.physical import base_guard, base_incremental, repo_catalog, repo_retention, repo_stream
from pgtool.physical.backup_run import BackupRun, BaseBackupResult, finish
from pgtool.physical.base_catalog import MANIFEST_FILE, METADATA_FILE, STAMP_FORMAT, BaseBackupInfo
from pgtool.physical.basebackup import (
    ServerFacts,
    describe,
    pg_basebackup_argv,
    prepare,
    server_clock,
    spool,
)
from pgtool.repo import Repository, base_prefix, open_repository
from pgtool.wal.repo_archive import RepoWal

SPOOL_PREFIX = "pgtool-basebackup-"


def take_repo_base_backup(
    dsn: str,
    repo_url: str,
    *,
    key_file: str | None = None,
    spool_dir: Path | None = None,
    run: BackupRun | None = None,
) -> BaseBackupResult:
    """Take one base backup into the repository at `repo_url`, then retention and WAL pruning there
    (options: `run`, as for `basebackup.take_base_backup`).

    Raises UsageError for bad options (or a repository of another system), ConnectError when the
    server cannot be reached, OperationError (ExternalCommandError, RepoError) when the backup, its
    check or its upload fails; a failed run leaves nothing listed in the repository and no spool.
    """
    parent = Path(spool_dir) if spool_dir is not None else Path(tempfile.gettempdir())
    if not parent.is_dir():
        raise UsageError(f"spool directory {parent} does not exist")
    run = run or BackupRun()
    facts, tools = prepare(dsn, run)
    repo = open_repository(repo_url, key_file=key_file, create=True)
    where = repo.url.display()
    log = get_logger().bind(repo=where)
    wal = RepoWal(repo)
    backups = repo_catalog.list_base_backups(repo)
    base_guard.check_same_system(backups, where, wal.system_id(), where, facts.system_identifier)
    base_guard.check_not_behind(backups, where, wal.list_archive(), where, facts.timeline, facts.wal_position)
    against = None
    if run.incremental:
        major = facts.server_version_num // 10000
        against = base_incremental.choose_parent(
            dsn, facts.server_version, major, backups, fallback=run.fallback
        )

    from pgtool.pg.terminate import sigterm_raises

    # SIGTERM (a pod stop) must unwind, so the spool is removed rather than left behind.
    with sigterm_raises():
        work = Path(tempfile.mkdtemp(prefix=SPOOL_PREFIX, dir=parent))  # mode 0700
        try:
            manifest = None
            if against is not None:
                manifest = work / f"{against.id}.backup_manifest"
                repo.read_to_file(base_prefix(against.id) + MANIFEST_FILE, manifest)
            info = None
            reason = repo_stream.cannot_stream(run.compress)
            if reason is None:
                try:
                    info = stream(repo, dsn, facts, tools, run.compress, against, manifest)
                except repo_stream.CannotStream as exc:
                    reason = exc.reason
            if info is None:
                log.info("base backup spooled locally, not streamed", reason=reason)
                stamp = _new_stamp(repo)
                info = spool(dsn, facts, tools, work / stamp, stamp, run.compress, against, manifest)
                repo_catalog.upload(repo, work / stamp, stamp)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log.info(
            "base backup stored",
            backup=info.id,
            kind=info.kind,
            size_bytes=info.size_bytes,
            compression=info.compression,
            streamed=reason is None,
        )
        outcome = repo_retention.apply_repo_retention(repo, keep=run.keep, window=run.window)
    # incomplete: spools and unlisted objects of runs killed outright (SIGKILL), or running now
    leftovers = spool_leftovers(parent) + [f"base/{s}/" for s in repo_catalog.unlisted(repo)]
    return finish(info, outcome, leftovers, run.report)


def stream(
    repo: Repository,
    dsn: str,
    facts: ServerFacts,
    tools: Any,
    compress: str,
    parent: BaseBackupInfo | None,
    parent_manifest: Path | None,
) -> BaseBackupInfo:
    """Stream one backup into `base/<stamp>/` (`repo_stream`), then its manifest and record; returns
    the record. CannotStream when pg_basebackup cannot write this backup to stdout (nothing stored)."""
    from pgtool.pg.command import libpq_args

    log = get_logger()
    stamp = _new_stamp(repo)
    prefix = base_prefix(stamp)
    started = time.monotonic()
    start_time, _, _ = server_clock(dsn)
    # client-side compression came with PostgreSQL 15's pg_basebackup (`auto` streams a plain tar
    # before, which the repository compresses)
    choices = repo_stream.ORDER[compress] if tools.major >= 15 or compress != "auto" else ("none",)
    with libpq_args(dsn) as (conninfo, env):
        for i, choice in enumerate(choices):
            codec = repo_stream.CODECS[choice]
            argv = pg_basebackup_argv(
                tools.path("pg_basebackup"),
                conninfo,
                "-",
                f"pgtool {stamp}",
                choice,
                parent_manifest,
                wal_method="fetch",  # `stream` cannot write to stdout
            )
            argv.append("--manifest-checksums=SHA256")  # hashlib checks them as the tar streams by
            try:
                streamed, check = repo_stream.stream_into(
                    repo, prefix + codec.object, argv, env, codec, facts.wal_segment_size
                )
                break
            except ExternalCommandError as exc:
                why = repo_stream.unsupported(exc.stderr_tail)
                if why is not None:
                    raise repo_stream.CannotStream(why) from None
                if "does not support compression" not in exc.stderr_tail or i == len(choices) - 1:
                    raise
                log.info("pg_basebackup cannot compress this way, trying the next", compression=choice)
    try:
        stop_time, next_xid, superuser = server_clock(dsn)
        files = {codec.object: streamed.stored_bytes, MANIFEST_FILE: len(streamed.manifest)}
        times = (start_time, stop_time)
        info = describe(files, stamp, facts, check, codec.name, times, next_xid, started, "fetch")
        info.superuser = superuser
        base_incremental.record_chain(info, parent)
        repo.put_if_absent(prefix + MANIFEST_FILE, streamed.manifest)
        repo.put_if_absent(prefix + METADATA_FILE, info.to_json().encode())  # last: now it is listed
    except BaseException:
        with suppress(PgtoolError):
            repo_catalog.delete(repo, stamp)
        raise
    return info


def _new_stamp(repo: Repository) -> str:
    """A UTC timestamp name under which the repository holds nothing yet, not even a killed upload's
    parts (waits for the next second if needed)."""
    while True:
        stamp = datetime.now(UTC).strftime(STAMP_FORMAT)
        if repo_catalog.stamp_free(repo, stamp):
            return stamp
        time.sleep(0.2)


def spool_leftovers(parent: Path) -> list[str]:
    """Spool directories of runs that were killed outright (SIGKILL, node loss), for the log."""
    try:
        return sorted(p.name for p in parent.iterdir() if p.name.startswith(SPOOL_PREFIX))
    except OSError:
        return []
