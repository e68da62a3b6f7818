"""Retention for logical dumps: delete complete dumps older than N days, per database.

Only files `pgtool.backup.dumps.complete_dump` recognises are candidates (exact name pattern plus a
manifest naming that file and database), so partial dumps, a killed run's leftovers and anything a
human put there are never touched. The newest complete dump of a database is always kept, however
old: after weeks of failing backups the last good dump is the one that matters most. Age comes from
the UTC stamp in the name, which is when the dump started.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pgtool.backup.dumps import checksum_path, list_database_dumps, manifest_path
from pgtool.obs.logging import get_logger
from pgtool.wal.durable import fsync_path


def expired_dumps(db_dir: Path, retention_days: int, *, now: datetime | None = None) -> list[Path]:
    """Dump files in `db_dir` retention would delete (never the newest complete one)."""
    dumps = list_database_dumps(db_dir)
    cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
    return [info.path for info in dumps[:-1] if info.taken_at < cutoff]


def apply_retention(db_dir: Path, retention_days: int, *, now: datetime | None = None) -> list[Path]:
    """Delete expired dumps with their checksum and manifest; return the dump files deleted.

    The dump goes first and its manifest last: if we die in between, what remains is a manifest
    without a dump, which nothing mistakes for a backup, rather than a dump nobody recognises.
    """
    log = get_logger()
    removed = []
    for dump in expired_dumps(db_dir, retention_days, now=now):
        for path in (dump, checksum_path(dump), manifest_path(dump)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        removed.append(dump)
        log.info("retention removed dump", file=str(dump))
    if removed:
        fsync_path(db_dir, directory=True)
    return removed
