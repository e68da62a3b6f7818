"""Retention for logical dumps: delete complete dumps older than N days, per database.

Only files `pgtool.logical.dumps.complete_dump` recognises are candidates (exact name pattern plus a
manifest naming that file and database), so partial dumps, a killed run's leftovers and anything a
human put there are never touched. Two dumps of a database are always kept, however old:
- the newest complete one: after weeks of failing backups the last dump is the one that matters most;
- the newest one `pgtool verify` restored (`dumps.is_verified`): the newer ones may be corrupt (verify
  said so, or has not looked yet), and until one of them verifies this is the last proven restore.
Age comes from the UTC stamp in the name, which is when the dump started.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pgtool.durable_write import fsync_path
from pgtool.logical import dump_directory
from pgtool.logical.dumps import (
    checksum_path,
    is_verified,
    list_database_dumps,
    manifest_path,
    verified_path,
)
from pgtool.obs.logging import get_logger


def expired_dumps(db_dir: Path, retention_days: int, *, now: datetime | None = None) -> list[Path]:
    """Dump files in `db_dir` retention would delete (never the newest complete or verified one)."""
    dumps = list_database_dumps(db_dir)
    cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
    keep = {info.path for info in dumps[-1:]}
    keep |= {info.path for info in [i for i in dumps if is_verified(i)][-1:]}
    return [info.path for info in dumps if info.path not in keep and info.taken_at < cutoff]


def apply_retention(db_dir: Path, retention_days: int, *, now: datetime | None = None) -> list[Path]:
    """Delete expired dumps with their checksum and manifest; return the dump files deleted.

    The dump goes first and its manifest last: if we die in between, what remains is a manifest
    without a dump, which nothing mistakes for a backup, rather than a dump nobody recognises.
    """
    log = get_logger()
    removed = []
    for dump in expired_dumps(db_dir, retention_days, now=now):
        if dump.is_dir():  # a directory-format dump: the whole directory, in one rename, goes first
            dump_directory.remove(dump)
        for path in (dump, checksum_path(dump), verified_path(dump), manifest_path(dump)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        removed.append(dump)
        log.info("retention removed dump", file=str(dump))
    if removed:
        fsync_path(db_dir, directory=True)
    return removed
