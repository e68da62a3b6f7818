"""Is the WAL archive complete between a base backup and a recovery target? Checked by file name.

PostgreSQL only notices a missing segment when replay reaches it, and then - without a target that
was not reached - it ends recovery early and promotes, with data missing. pgtool checks the names first:

- the recovery timeline and the file read at each position come from `pgtool.wal.chain` (the one
  archive model, shared with status and retention): the newest timeline reachable from the backup's
  through `.history` files, as PostgreSQL's `recovery_target_timeline='latest'` probes them; the
  backup must lie on that timeline's history (it started before the switch point);
- every segment from the one holding the backup's start LSN to the one holding the target (or to the
  end of the archive) must be there, each on the timeline that owns it: after a switch at LSN X, the
  segment holding X and later ones come from the new timeline;
- segments inside the backup's own WAL range count as present: the backup carries them (`pg_wal.tar`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pgtool.errors import OperationError
from pgtool.physical.base_catalog import BaseBackupInfo
from pgtool.recovery.wal_source import DirArchive, WalArchive, as_archive
from pgtool.wal.chain import ArchiveIndex, ChainError, Span
from pgtool.wal.listing import format_lsn, parse_lsn, segno_of_lsn

# The archive model lives in pgtool.wal.chain; this module phrases its answers for recover and the drill.
TimelineSpan = Span


@dataclass
class Continuity:
    """What the check found: the path of timelines and the archived range it relies on."""

    timeline: int
    path: list[Span]
    first_segment: str
    last_segment: str
    last_segment_mtime: float | None
    segments: int
    gap: str | None = None  # with allow_gap: the first missing segment, where the checked range ends


def backup_path(index: ArchiveIndex, backup: BaseBackupInfo) -> list[Span]:
    """The timelines recovery from `backup` follows (OperationError when it cannot)."""
    try:
        return index.path(backup.timeline, parse_lsn(backup.start_lsn))
    except ChainError:
        target = index.recovery_timeline(backup.timeline)
        raise OperationError(
            f"base backup {backup.id} (timeline {backup.timeline}, {backup.start_lsn}) is not on the "
            f"history of timeline {target}, the newest in the archive",
            hint="take a new base backup on the current timeline",
        ) from None
    except (OSError, ValueError) as exc:  # ValueError includes a corrupt compressed file
        target = index.recovery_timeline(backup.timeline)
        raise OperationError(f"cannot read timeline history {target:08X}.history: {exc}") from None


def _check_system(archive: WalArchive, backup: BaseBackupInfo) -> None:
    """The archive must hold this cluster's WAL (archive-wal records its system identifier)."""
    archived = archive.system_id()
    if archived is not None and str(archived) != backup.system_identifier:
        raise OperationError(
            f"WAL archive {archive.display} belongs to database system {archived}, base backup "
            f"{backup.id} to {backup.system_identifier}",
            hint="pass the archive of the cluster the backup was taken from",
        )


def check_continuity(
    archive_dir: Path | WalArchive,
    backup: BaseBackupInfo,
    *,
    until_lsn: int | None = None,
    purpose: str = "",
    allow_gap: bool = False,
) -> Continuity:
    """Check the archive holds every segment from `backup`'s start to `until_lsn` (None: its end).

    archive_dir: an archive directory or a `pgtool.recovery.wal_source` archive (a repository's WAL).

    Raises OperationError naming the first missing segment, or saying the target lies beyond the
    end of the archive. With allow_gap (targets that cannot be placed by name: a time, an xid), a
    missing segment after the backup's own WAL ends the checked range instead: the result's `gap`
    names it and `last_segment` is the one before it.
    """
    archive = as_archive(archive_dir)
    if isinstance(archive, DirArchive) and not archive.archive_dir.is_dir():
        raise OperationError(f"WAL archive {archive.display} does not exist")
    _check_system(archive, backup)
    seg_size = backup.wal_segment_size
    index = archive.index(seg_size)
    path = backup_path(index, backup)
    first = segno_of_lsn(parse_lsn(backup.start_lsn), seg_size)
    carried = range(first, segno_of_lsn(parse_lsn(backup.stop_lsn), seg_size) + 1)
    end_of_archive = max(index.end_segno(path, first) or first, carried[-1])
    if until_lsn is not None:
        last = segno_of_lsn(until_lsn, seg_size)
        if last > end_of_archive:
            raise OperationError(
                f"target LSN {format_lsn(until_lsn)} is beyond the end of the WAL archive "
                f"(newest segment {index.name(path, end_of_archive)})",
                hint="wait for the archiver, or run SELECT pg_switch_wal() on the primary",
            )
    else:
        last = end_of_archive
    what = purpose or f"to recover base backup {backup.id}"
    gap = None
    for segno in index.missing(path, first, last, carried):
        if allow_gap and segno > carried[-1]:
            gap, last = index.name(path, segno), segno - 1
            break
        raise OperationError(
            f"WAL archive {archive.display} has a gap: segment {index.name(path, segno)} is missing ({what}, "
            f"from {backup.start_wal_file} to {index.name(path, last)})",
            hint="recover to an earlier target or from a newer base backup",
        )
    archived = index.segment(path, last)
    return Continuity(
        timeline=path[-1].tli,
        path=path,
        first_segment=backup.start_wal_file,
        last_segment=index.name(path, last),
        last_segment_mtime=archive.mtime(archived) if archived else None,
        segments=last - first + 1,
        gap=gap,
    )
