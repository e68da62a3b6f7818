"""`pgtool basebackup --repo URL`: a base backup streamed into the repository (or spooled locally once
when it cannot stream), checked before it is listed.

One run:
1. asks the server for its facts (`basebackup.prepare`) and applies the directory's safety checks
   (`base_guard`) to the repository: its WAL's recorded system identifier (`wal/system-identifier`)
   and timeline history objects, and its base backups;
2. claims its stamp, a UTC timestamp name (`_new_stamp`, `repo_catalog.claim`: a conditional create of
   `base/<stamp>/pgtool-basebackup.claim`) before it writes anything under it: runs that overlap (two
   CronJobs, a manual run beside one) each write a prefix of their own, never one shared. The claim
   is deleted once the record is written, and with the rest of the stamp when the run fails;
3. streams: `pg_basebackup -D - --format=tar --wal-method=fetch` into `base/<stamp>/base.tar[.lz4|.zst|
   .gz]` (`repo_stream`: multipart, every file checked against the manifest on the way, committed only
   when everything passed), then `base/<stamp>/backup_manifest`, then the record
   `base/<stamp>/pgtool-basebackup.json` LAST: a backup is listed only once its record exists;
4. or, when it cannot stream (`repo_stream.cannot_stream`, `CannotStream`: server-side compression,
   tablespaces, WAL recycled before it was fetched; said in one log line), spools as before under a
   newly claimed stamp: runs pg_basebackup exactly as `--dest` does (WAL streamed alongside) into
   `<spool>/pgtool-basebackup-XXXX/<stamp>/` (`--spool-dir`, default $TMPDIR or /tmp), checks it
   (`base_verify`) and uploads it file by file, the record last (`repo_catalog.upload`);
   a failure or SIGTERM in 2-4 abandons the multipart upload and deletes whatever of the stamp was
   written, its claim last;
5. removes the spool directory, always: after success, after a failure, and on SIGTERM
   (`sigterm_raises`);
6. applies retention and prunes the repository's WAL (`repo_retention`).

With `incremental`, the newest backup's `backup_manifest` object is downloaded (verified) into the
spool directory and pg_basebackup runs with `--incremental` against it (`base_incremental`).

Only SIGKILL (or a node loss) can leave something behind: an abandoned multipart upload (invisible;
S3 keeps its parts until a lifecycle rule aborts them), the stamp's claim, or objects of a stamp with
no record. They are never listed, so retention, status, recover and verify ignore them; later runs log
the stamps that hold more than a claim as a warning.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pgtool.errors import ExternalCommandError, OperationError, PgtoolError, UsageError
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
CLAIM_TRIES = 60  # seconds (stamps) tried before giving up: as many runs as that started together


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
        stamp = None
        try:
            stamp = _new_stamp(repo)  # claimed: no other run writes under base/<stamp>/
            manifest = None
            if against is not None:
                manifest = work / f"{against.id}.backup_manifest"
                repo.read_to_file(base_prefix(against.id) + MANIFEST_FILE, manifest)
            info = None
            reason = repo_stream.cannot_stream(run.compress)
            if reason is None:
                try:
                    info = stream(repo, stamp, dsn, facts, tools, run.compress, against, manifest)
                except repo_stream.CannotStream as exc:
                    reason = exc.reason
            if info is None:
                log.info("base backup spooled locally, not streamed", reason=reason)
                # A fresh stamp: the stream may have run for hours before it gave up, and a backup's
                # stamp orders it among the others (the newest parent, retention's newest N).
                repo_catalog.delete(repo, stamp)  # the claim (the abandoned stream left nothing listed)
                stamp = None
                stamp = _new_stamp(repo)
                info = spool(dsn, facts, tools, work / stamp, stamp, run.compress, against, manifest)
                repo_catalog.upload(repo, work / stamp, stamp)
        except BaseException:
            if stamp is not None:
                with suppress(PgtoolError):
                    if repo_catalog.recorded(repo, stamp):
                        # The record is written last: the backup is whole, and may already count
                        # (another run's incremental parent, its retention's newest N). Keep it.
                        repo_catalog.release(repo, stamp)
                    else:  # whatever of the stamp was written, its claim last
                        repo_catalog.delete(repo, stamp)
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        # The claim has done its work once the record is there: a later claim of this stamp finds the
        # backup's objects and leaves the stamp alone (`repo_catalog.claim`). Deleting it keeps the prefix
        # exactly the backup's objects; one left behind (a failed delete, a kill right here) is harmless:
        # readers skip it (`repo_catalog.objects`) and retention deletes it with the backup.
        try:
            repo_catalog.release(repo, stamp)
        except PgtoolError as exc:
            log.warning("base backup stored; its stamp's claim was not deleted", backup=stamp, error=str(exc))
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
    stamp: str,
    dsn: str,
    facts: ServerFacts,
    tools: Any,
    compress: str,
    parent: BaseBackupInfo | None,
    parent_manifest: Path | None,
) -> BaseBackupInfo:
    """Stream one backup into `base/<stamp>/` (claimed by this run: `_new_stamp`), then its manifest and
    record; returns the record. CannotStream when pg_basebackup cannot write this backup to stdout
    (nothing stored). On failure the caller deletes whatever of the stamp was written."""
    from pgtool.pg.command import libpq_args

    log = get_logger()
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
    stop_time, next_xid, superuser = server_clock(dsn)
    files = {codec.object: streamed.stored_bytes, MANIFEST_FILE: len(streamed.manifest)}
    times = (start_time, stop_time)
    info = describe(files, stamp, facts, check, codec.name, times, next_xid, started, "fetch")
    info.superuser = superuser
    base_incremental.record_chain(info, parent)
    repo.put_if_absent(prefix + MANIFEST_FILE, streamed.manifest)
    repo.put_if_absent(prefix + METADATA_FILE, info.to_json().encode())  # last: now it is listed
    return info


def _new_stamp(repo: Repository) -> str:
    """A UTC timestamp name this run has claimed (`repo_catalog.claim`): no other run writes under it,
    and nothing else of it is stored, not even a killed upload's parts. A stamp another run holds (it
    started in the same second) or one already used moves on to the next second, CLAIM_TRIES times."""
    for _ in range(CLAIM_TRIES):
        stamp = datetime.now(UTC).strftime(STAMP_FORMAT)
        if repo_catalog.claim(repo, stamp):
            return stamp
        time.sleep(1.001 - time.time() % 1)  # into the next second: the next stamp
    raise OperationError(
        f"no free base backup stamp in {repo.url.display()} for {CLAIM_TRIES} seconds: each was "
        "claimed by another run or already held objects",
        hint="look for runs of `pgtool basebackup --repo` looping against this repository",
    )


def spool_leftovers(parent: Path) -> list[str]:
    """Spool directories of runs that were killed outright (SIGKILL, node loss), for the log."""
    try:
        return sorted(p.name for p in parent.iterdir() if p.name.startswith(SPOOL_PREFIX))
    except OSError:
        return []
