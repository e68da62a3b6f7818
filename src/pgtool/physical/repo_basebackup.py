"""`pgtool basebackup --repo URL`: a base backup spooled locally once, checked, then uploaded.

One run:
1. asks the server for its facts (`basebackup.prepare`) and applies the directory's safety checks
   (`base_guard`) to the repository: its WAL's recorded system identifier (`wal/system-identifier`)
   and timeline history objects, and its base backups;
2. runs pg_basebackup exactly as `--dest` does (tar, WAL streamed, fast checkpoint) into a spool
   directory `<spool>/pgtool-basebackup-XXXX/<stamp>/` (`--spool-dir`, default $TMPDIR or /tmp), and
   checks it against its manifest (`base_verify`) before anything is published;
3. uploads it to `base/<stamp>/` (`repo_catalog.upload`: each file streamed in parts, the metadata
   object last, so the backup is listed only once it is whole);
4. removes the spool, always: after success, after a failure, and on SIGTERM (`sigterm_raises`);
5. applies retention and prunes the repository's WAL (`repo_retention`).

With `incremental`, the newest backup's `backup_manifest` is downloaded (verified) into the spool and
pg_basebackup runs with `--incremental` against it (`base_incremental`).

Why a local spool rather than streaming: pg_basebackup writes to stdout only in tar format with
`--wal-method=fetch` or `none` and a single tablespace, and `fetch` can fail on a busy server that
recycled a segment the backup still needs; and pgtool checks a backup (manifest checksum, member sizes,
pg_verifybackup) before it becomes visible. The spool needs room for one backup as pg_basebackup
writes it (the compressed tars plus the WAL written during the backup).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from pgtool.errors import UsageError
from pgtool.obs.logging import get_logger
from pgtool.physical import base_guard, base_incremental, repo_catalog, repo_retention
from pgtool.physical.backup_run import BackupRun, BaseBackupResult, finish
from pgtool.physical.base_catalog import MANIFEST_FILE, STAMP_FORMAT
from pgtool.physical.basebackup import prepare, spool
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
        stamp = _new_stamp(repo)
        work = Path(tempfile.mkdtemp(prefix=SPOOL_PREFIX, dir=parent))  # mode 0700
        try:
            manifest = None
            if against is not None:
                manifest = work / f"{against.id}.backup_manifest"
                repo.read_to_file(base_prefix(against.id) + MANIFEST_FILE, manifest)
            info = spool(dsn, facts, tools, work / stamp, stamp, run.compress, against, manifest)
            uploaded = repo_catalog.upload(repo, work / stamp, stamp)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log.info(
            "base backup uploaded",
            backup=stamp,
            kind=info.kind,
            size_bytes=info.size_bytes,
            uploaded_bytes=uploaded,
            compression=info.compression,
        )
        outcome = repo_retention.apply_repo_retention(repo, keep=run.keep, window=run.window)
    # incomplete: spools of runs killed outright (SIGKILL), or running now
    return finish(info, outcome, spool_leftovers(parent), run.report)


def _new_stamp(repo: Repository) -> str:
    """A UTC timestamp name under which the repository holds nothing yet, not even a killed upload's
    parts (waits for the next second if needed)."""
    while True:
        stamp = datetime.now(UTC).strftime(STAMP_FORMAT)
        if not repo.list(base_prefix(stamp)):
            return stamp
        time.sleep(0.2)


def spool_leftovers(parent: Path) -> list[str]:
    """Spool directories of runs that were killed outright (SIGKILL, node loss), for the log."""
    try:
        return sorted(p.name for p in parent.iterdir() if p.name.startswith(SPOOL_PREFIX))
    except OSError:
        return []
