"""Is the WAL archive complete between a base backup and a recovery target? Checked by file name.

PostgreSQL only notices a missing segment when replay reaches it, and then - without a target that
was not reached - it ends recovery early and promotes, with data missing. pgtool checks the names first:

- the recovery timeline is the newest one reachable from the backup's timeline through `.history`
  files in the archive, probing TLI+1, TLI+2, ... as PostgreSQL's `recovery_target_timeline='latest'`
  does; the backup must lie on that timeline's history (it started before the switch point);
- every segment from the one holding the backup's start LSN to the one holding the target (or to the
  end of the archive) must be there, each on the timeline that owns it: after a switch at LSN X, the
  segment holding X and later ones come from the new timeline;
- segments inside the backup's own WAL range count as present: the backup carries them (`pg_wal.tar`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pgtool.backup.base_catalog import BaseBackupInfo
from pgtool.backup.walnames import (
    ArchivedFile,
    format_lsn,
    list_archive,
    parse_history,
    parse_lsn,
    parse_segment_name,
    read_archived_text,
    segment_name,
    segno_of_lsn,
)
from pgtool.errors import OperationError


@dataclass(frozen=True)
class TimelineSpan:
    """Timeline `tli` is current from `begin` (LSN, 0 for the first) up to `end` (None: still current)."""

    tli: int
    begin: int
    end: int | None


@dataclass
class Continuity:
    """What the check found: the path of timelines and the archived range it relies on."""

    timeline: int
    path: list[TimelineSpan]
    first_segment: str
    last_segment: str
    last_segment_mtime: float | None
    segments: int
    gap: str | None = None  # with allow_gap: the first missing segment, where the checked range ends


def _history_files(items: list[ArchivedFile]) -> dict[int, str]:
    return {i.timeline: i.wal_name for i in items if i.kind == "history"}


def timeline_path(archive_dir: Path, backup: BaseBackupInfo, items: list[ArchivedFile]) -> list[TimelineSpan]:
    """The timelines recovery from `backup` follows to the newest timeline in the archive."""
    histories = _history_files(items)
    target = backup.timeline
    while target + 1 in histories:
        target += 1
    if target == backup.timeline:
        return [TimelineSpan(backup.timeline, 0, None)]
    try:
        entries = parse_history(read_archived_text(archive_dir, histories[target]))
    except (OSError, ValueError) as exc:  # ValueError includes a corrupt compressed file
        raise OperationError(f"cannot read timeline history {histories[target]}: {exc}") from None
    spans, begin = [], 0
    for entry in entries:
        spans.append(TimelineSpan(entry.parent, begin, entry.switchpoint))
        begin = entry.switchpoint
    spans.append(TimelineSpan(target, begin, None))
    start = parse_lsn(backup.start_lsn)
    on_path = [s for s in spans if s.tli == backup.timeline]
    if not on_path or (on_path[0].end is not None and on_path[0].end <= start):
        raise OperationError(
            f"base backup {backup.id} (timeline {backup.timeline}, {backup.start_lsn}) is not on the "
            f"history of timeline {target}, the newest in the archive",
            hint="take a new base backup on the current timeline",
        )
    # Drop the timelines before the backup's own: recovery starts on it.
    return spans[spans.index(on_path[0]) :]


def _owner(path: list[TimelineSpan], segno: int, seg_size: int) -> int:
    owner = path[0].tli
    for span in path:
        if segno_of_lsn(span.begin, seg_size) <= segno:
            owner = span.tli
    return owner


def _check_system(archive_dir: Path, backup: BaseBackupInfo) -> None:
    """The archive must hold this cluster's WAL (archive-wal records its system identifier)."""
    from pgtool.wal.archive import read_system_id

    try:
        archived = read_system_id(str(archive_dir))
    except ValueError:
        return  # an unreadable marker: segment names are still checked below
    if archived is not None and str(archived) != backup.system_identifier:
        raise OperationError(
            f"WAL archive {archive_dir} belongs to database system {archived}, base backup {backup.id} "
            f"to {backup.system_identifier}",
            hint="pass the archive of the cluster the backup was taken from",
        )


def check_continuity(
    archive_dir: Path,
    backup: BaseBackupInfo,
    *,
    until_lsn: int | None = None,
    purpose: str = "",
    allow_gap: bool = False,
) -> Continuity:
    """Check the archive holds every segment from `backup`'s start to `until_lsn` (None: its end).

    Raises OperationError naming the first missing segment, or saying the target lies beyond the
    end of the archive. With allow_gap (targets that cannot be placed by name: a time, an xid), a
    missing segment after the backup's own WAL ends the checked range instead: the result's `gap`
    names it and `last_segment` is the one before it.
    """
    archive_dir = Path(archive_dir)
    if not archive_dir.is_dir():
        raise OperationError(f"WAL archive {archive_dir} does not exist")
    _check_system(archive_dir, backup)
    seg_size = backup.wal_segment_size
    items = list_archive(archive_dir)
    path = timeline_path(archive_dir, backup, items)
    present: dict[str, ArchivedFile] = {i.segment: i for i in items if i.kind == "segment" and i.segment}
    first = segno_of_lsn(parse_lsn(backup.start_lsn), seg_size)
    carried = range(first, segno_of_lsn(parse_lsn(backup.stop_lsn), seg_size) + 1)

    # The end of the archive: the newest segment that belongs to the path.
    last_archived = None
    for name, _item in present.items():
        tli, segno = parse_segment_name(name, seg_size)
        if segno >= first and _owner(path, segno, seg_size) == tli and any(s.tli == tli for s in path):
            last_archived = segno if last_archived is None else max(last_archived, segno)
    end_of_archive = max(last_archived if last_archived is not None else first, carried[-1])
    if until_lsn is not None:
        last = segno_of_lsn(until_lsn, seg_size)
        if last > end_of_archive:
            newest = segment_name(_owner(path, end_of_archive, seg_size), end_of_archive, seg_size)
            raise OperationError(
                f"target LSN {format_lsn(until_lsn)} is beyond the end of the WAL archive "
                f"(newest segment {newest})",
                hint="wait for the archiver, or run SELECT pg_switch_wal() on the primary",
            )
    else:
        last = end_of_archive
    what = purpose or f"to recover base backup {backup.id}"
    gap = None
    for segno in range(first, last + 1):
        name = segment_name(_owner(path, segno, seg_size), segno, seg_size)
        if name not in present and segno not in carried:
            if allow_gap and segno > carried[-1]:
                gap, last = name, segno - 1
                break
            raise OperationError(
                f"WAL archive {archive_dir} has a gap: segment {name} is missing ({what}, "
                f"from {backup.start_wal_file} to "
                f"{segment_name(_owner(path, last, seg_size), last, seg_size)})",
                hint="recover to an earlier target or from a newer base backup",
            )
    last_name = segment_name(_owner(path, last, seg_size), last, seg_size)
    mtime = None
    if last_name in present:
        mtime = (archive_dir / present[last_name].name).stat().st_mtime
    return Continuity(
        timeline=path[-1].tli,
        path=path,
        first_segment=backup.start_wal_file,
        last_segment=last_name,
        last_segment_mtime=mtime,
        segments=last - first + 1,
        gap=gap,
    )
