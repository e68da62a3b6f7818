"""Retention of base backups and pruning of the WAL archive they need.

Retention keeps the newest `keep` complete backups. It only ever considers complete ones (see
`base_catalog`), so an interrupted run's temporary directory is neither counted nor deleted, and the
newest complete backup always survives (keep >= 1).

WAL pruning follows the deployment rule "keep WAL back to the second-newest kept base backup" (with
one kept backup: back to it): archived segments, `.partial` and `.backup` files whose segment number
is older than that backup's start WAL file are removed, like `pg_archivecleanup` (which compares names
without the timeline). Timeline `.history` files are never removed: recovery needs them to follow
timeline switches, and they are tiny. Older kept backups stay restorable to their own end point
(`recover --target-immediate`), since each carries the WAL it needs to become consistent.

Timelines: nothing on a timeline newer than the newest backup's is ever deleted, neither backups nor
WAL (and WAL on a timeline newer than the boundary backup's stays too). Such files exist only after a
failover the newest backup predates, or a split brain (an old primary backing up on its old timeline,
which `basebackup` refuses first); deleting them would delete the history recovery must follow.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from pgtool.obs.logging import get_logger
from pgtool.physical.base_catalog import BaseBackupInfo, list_base_backups
from pgtool.wal.archive import ArchivedFile
from pgtool.wal.durable import fsync_path
from pgtool.wal.listing import stored_copies

DELETING_PREFIX = ".deleting-"


@dataclass
class RetentionOutcome:
    kept: list[BaseBackupInfo]
    deleted: list[str] = field(default_factory=list)
    wal_pruned: list[str] = field(default_factory=list)  # file names removed
    wal_boundary: str | None = None

    @property
    def segments_pruned(self) -> int:
        """Whole WAL segments removed (not .partial/.backup files, each segment counted once)."""
        return len({n[:24] for n in self.wal_pruned if len(n) == 24 or n[24:] in (".zst", ".lz4")})


def wal_boundary(kept: list[BaseBackupInfo]) -> BaseBackupInfo | None:
    """The kept backup whose start WAL file is the oldest WAL the archive must keep."""
    if not kept:
        return None
    return kept[-2] if len(kept) >= 2 else kept[-1]


def doomed_backups(complete: list[BaseBackupInfo], keep: int) -> list[BaseBackupInfo]:
    """The complete backups (oldest first) retention deletes: all but the newest `keep` (at least 1),
    never one on a timeline newer than the newest backup's."""
    keep = max(1, keep)
    newest_tli = complete[-1].timeline if complete else 0
    return [b for b in (complete[:-keep] if len(complete) > keep else []) if b.timeline <= newest_tli]


def prunable(
    files: list[ArchivedFile], oldest_needed: str, *, max_timeline: int | None
) -> list[ArchivedFile]:
    """The archived files pruning removes: WAL older than segment `oldest_needed`, never `.history`
    files, nor WAL on a timeline newer than `max_timeline` (the kept backup's)."""
    from pgtool.wal.names import HISTORY, parse_wal_name

    boundary = parse_wal_name(oldest_needed)
    # The cutoff compares (log, seg) pairs only, so no segment size is assumed: an index keyed by
    # segment number would merge names of different log ids when segments are smaller than 16 MiB.
    # The timeline does not matter (as pg_archivecleanup), except that nothing newer than the kept
    # backup's goes.
    return [
        f
        for f in files
        if f.wal.kind != HISTORY
        and (f.wal.log, f.wal.seg) < (boundary.log, boundary.seg)
        and (max_timeline is None or f.wal.timeline <= max_timeline)
    ]


def apply_retention(dest: Path, *, keep: int, archive_dir: Path | None = None) -> RetentionOutcome:
    """Delete complete backups beyond the newest `keep`, then prune `archive_dir` if given."""
    log = get_logger().bind(dest=str(dest))
    complete = list_base_backups(dest)
    doomed = doomed_backups(complete, keep)
    outcome = RetentionOutcome(kept=[b for b in complete if b.id not in {d.id for d in doomed}])
    for info in doomed:
        assert info.path is not None
        # Rename first: the backup leaves the catalogue atomically even if the delete is interrupted.
        trash = info.path.with_name(DELETING_PREFIX + info.id)
        os.rename(info.path, trash)
        shutil.rmtree(trash, ignore_errors=True)
        outcome.deleted.append(info.id)
        log.info("base backup deleted by retention", backup=info.id)
    boundary = wal_boundary(outcome.kept)
    if archive_dir is not None and boundary is not None:
        outcome.wal_boundary = boundary.start_wal_file
        outcome.wal_pruned = prune_archive(
            Path(archive_dir), boundary.start_wal_file, max_timeline=boundary.timeline
        )
        if outcome.wal_pruned:
            log.info(
                "archived WAL pruned",
                removed=len(outcome.wal_pruned),
                oldest_kept=boundary.start_wal_file,
                for_backup=boundary.id,
            )
    return outcome


def prune_archive(archive_dir: Path, oldest_needed: str, *, max_timeline: int | None = None) -> list[str]:
    """Remove archived WAL older than segment `oldest_needed`; never `.history` files or foreign files,
    nor WAL on a timeline newer than `max_timeline` (the kept backup's).

    Returns the names removed (each file and its checksum record), oldest first.
    """
    from pgtool.wal.archive import list_archive

    removed = []
    for item in prunable(list_archive(str(archive_dir)), oldest_needed, max_timeline=max_timeline):
        for path in stored_copies(archive_dir, item.name):
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            removed.append(path.name)
    if removed:
        fsync_path(archive_dir, directory=True)
    return removed
