"""Retention of base backups and pruning of the WAL archive they need.

Retention keeps the newest `keep` complete backups. It only ever considers complete ones (see
`base_catalog`), so an interrupted run's temporary directory is neither counted nor deleted, and the
newest complete backup always survives (keep >= 1).

Chains: a kept incremental backup keeps every backup of its chain (`base_chain.with_ancestors`), so
retention never deletes a backup a kept incremental needs, and never leaves a chain without a member.

Recovery window (`--retention-window 14d`): to recover to any moment of the last 14 days, recovery
needs a backup that finished before the window began (the window's anchor: the newest such backup,
with its chain) and every backup and WAL file after it. Those are kept too, on top of the `keep`
newest, and the WAL boundary moves back to the anchor's start if that is older. When no backup is
old enough yet, nothing is old enough to delete either.

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
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pgtool.durable_write import fsync_path
from pgtool.errors import UsageError
from pgtool.obs.logging import get_logger
from pgtool.physical.base_catalog import BaseBackupInfo, list_base_backups
from pgtool.physical.base_chain import with_ancestors
from pgtool.wal.archive import ArchivedFile
from pgtool.wal.listing import stored_copies

DELETING_PREFIX = ".deleting-"


@dataclass
class RetentionOutcome:
    kept: list[BaseBackupInfo]
    deleted: list[str] = field(default_factory=list)
    wal_pruned: list[str] = field(default_factory=list)  # file names removed
    wal_boundary: str | None = None
    reasons: dict[str, str] = field(default_factory=dict)  # deleted backup id -> why
    wal_reason: str = ""  # why WAL older than wal_boundary is not needed
    dry_run: bool = False  # deleted / wal_pruned list what would go; nothing was removed

    @property
    def segments_pruned(self) -> int:
        """Whole WAL segments removed (not .partial/.backup files, each segment counted once)."""
        return len({n[:24] for n in self.wal_pruned if len(n) == 24 or n[24:] in (".zst", ".lz4")})


_INTERVAL = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_window(text: str) -> timedelta:
    """`14d`, `36h`, `2w`, `90m` -> timedelta; UsageError otherwise."""
    match = _INTERVAL.match(text)
    if not match or int(match.group(1)) == 0:
        raise UsageError(f"--retention-window {text!r} is not a duration such as 14d, 36h or 2w")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


@dataclass
class RetentionPlan:
    """What retention keeps and deletes (with why), and the kept backup the WAL must reach back to."""

    kept: list[BaseBackupInfo]
    doomed: list[BaseBackupInfo]
    reasons: dict[str, str]
    boundary: BaseBackupInfo | None
    wal_reason: str = ""


def plan_retention(
    complete: list[BaseBackupInfo],
    keep: int,
    window: timedelta | None = None,
    now: datetime | None = None,
) -> RetentionPlan:
    """The shared rules (see the module docstring), for a directory and a repository alike.

    complete: the complete backups, oldest first. now: the window's end (default: the clock).
    """
    keep = max(1, keep)
    newest_tli = complete[-1].timeline if complete else 0
    kept = {b.id for b in complete[-keep:]} | {b.id for b in complete if b.timeline > newest_tli}
    anchor = None
    cutoff = None
    if window is not None:
        cutoff = (now or datetime.now(UTC)) - window
        before = [b for b in complete if b.stop_datetime <= cutoff]
        anchor = before[-1] if before else None
        kept |= {b.id for b in complete if b.stop_datetime > cutoff}
        kept |= {anchor.id} if anchor else set()
    kept = with_ancestors(complete, kept)
    kept_list = [b for b in complete if b.id in kept]
    doomed = [b for b in complete if b.id not in kept]
    why = f"older than the newest {keep} (--keep {keep}) and no kept incremental needs it"
    if window is not None and anchor is not None:
        why += (
            f"; not needed for the {_show(window)} window: {anchor.id} finished before it began "
            f"({cutoff.isoformat(timespec='seconds') if cutoff else ''})"
        )
    boundary = wal_boundary(kept_list)
    wal_reason = f"older than the start of {boundary.id}" if boundary else ""
    if anchor is not None and boundary is not None and _older(anchor, boundary):
        boundary = anchor
        wal_reason = f"older than the start of {anchor.id}, the backup the {_show(window)} window starts from"
    return RetentionPlan(kept_list, doomed, {b.id: why for b in doomed}, boundary, wal_reason)


def _older(a: BaseBackupInfo, b: BaseBackupInfo) -> bool:
    from pgtool.wal.listing import parse_lsn

    return parse_lsn(a.start_lsn) < parse_lsn(b.start_lsn)


def _show(window: timedelta | None) -> str:
    if window is None:
        return ""
    secs = int(window.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs % size == 0:
            return f"{secs // size}{unit}"
    return f"{secs}s"


def wal_boundary(kept: list[BaseBackupInfo]) -> BaseBackupInfo | None:
    """The kept backup whose start WAL file is the oldest WAL the archive must keep."""
    if not kept:
        return None
    return kept[-2] if len(kept) >= 2 else kept[-1]


def doomed_backups(complete: list[BaseBackupInfo], keep: int) -> list[BaseBackupInfo]:
    """The complete backups (oldest first) retention deletes: all but the newest `keep` (at least 1)
    and the chains they need, never one on a timeline newer than the newest backup's."""
    return plan_retention(complete, keep).doomed


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


def apply_retention(
    dest: Path,
    *,
    keep: int,
    archive_dir: Path | None = None,
    window: timedelta | None = None,
    dry_run: bool = False,
) -> RetentionOutcome:
    """Delete what `plan_retention` dooms, then prune `archive_dir` if given (dry_run: only list)."""
    from pgtool.wal.archive import list_archive

    def delete(info: BaseBackupInfo) -> None:
        assert info.path is not None
        # Rename first: the backup leaves the catalogue atomically even if the delete is interrupted.
        trash = info.path.with_name(DELETING_PREFIX + info.id)
        os.rename(info.path, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def prune(boundary: BaseBackupInfo) -> list[str]:
        assert archive_dir is not None
        if dry_run:
            files = prunable(
                list_archive(str(archive_dir)), boundary.start_wal_file, max_timeline=boundary.timeline
            )
            return [f.name for f in files]
        return prune_archive(Path(archive_dir), boundary.start_wal_file, max_timeline=boundary.timeline)

    plan = plan_retention(list_base_backups(dest), keep, window)
    log = get_logger().bind(dest=str(dest))
    return carry_out(plan, log, delete, prune if archive_dir is not None else None, dry_run=dry_run)


def carry_out(
    plan: RetentionPlan,
    log: Any,
    delete: Callable[[BaseBackupInfo], object],
    prune: Callable[[BaseBackupInfo], list[str]] | None,
    *,
    dry_run: bool,
) -> RetentionOutcome:
    """The plan applied, whichever place holds the backups: `delete` each doomed backup, then (if the
    archive is known) `prune` the WAL older than the boundary backup's start; dry_run only lists."""
    outcome = RetentionOutcome(kept=plan.kept, reasons=plan.reasons, dry_run=dry_run)
    for info in plan.doomed:
        outcome.deleted.append(info.id)
        if not dry_run:
            delete(info)
            log.info("base backup deleted by retention", backup=info.id, reason=plan.reasons[info.id])
    boundary = plan.boundary
    if prune is None or boundary is None:
        return outcome
    outcome.wal_boundary = boundary.start_wal_file
    outcome.wal_reason = plan.wal_reason
    outcome.wal_pruned = prune(boundary)
    if outcome.wal_pruned and not dry_run:
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
