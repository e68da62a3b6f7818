"""Base backups, the WAL they need, and the recoverable window they give.

A base backup is only worth something with every WAL segment from its start (or, when pg_basebackup
streamed its own WAL into the backup, from its stop) up to the newest archived segment: one missing
segment ends recovery there. The recoverable window runs from the consistent point (stop time) of the
oldest base backup whose WAL chain reaches the newest archived segment without a gap, to the time that
segment was archived.

Timelines: after a promotion the archive holds segments of several timelines. Which one recovery reads
at each position comes from `pgtool.wal.chain`, the archive model `recover` uses too: the timeline path
from the oldest backup's timeline through consecutive `.history` files, as PostgreSQL's
`recovery_target_timeline = 'latest'` follows it. So status and recover give the same answer.

A window is claimed only when its WAL has been read: every segment from the window's first to the
newest (and the timeline history files on the way) is read in full, its SHA-256 record and page header
checked (`pgtool.wal.checksum`), exactly as restore-wal would before handing it to PostgreSQL. A
segment that fails (damaged, or without a checksum record: archived by something other than
archive-wal) counts as a gap. The output says what was read. This costs one read of the window's
WAL per status run.

Layouts and names come from `pgtool.physical.base_catalog` (backup directories and their JSON metadata)
and `pgtool.wal.listing` (archived names, compression suffixes, history files).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict, Unpack

from pgtool.physical.base_catalog import BaseBackupInfo, list_base_backups
from pgtool.status.durations import format_duration
from pgtool.status.model import Section, Thresholds
from pgtool.status.recovery_path import recovery_path
from pgtool.wal.archive import ArchivedFile
from pgtool.wal.chain import ArchiveIndex, Span, first_needed
from pgtool.wal.listing import DEFAULT_SEGMENT_SIZE, parse_lsn, parse_segment_name

SELF_CONTAINED_WAL_METHODS = ("stream", "fetch")
MAX_GAP_LINES = 3


def _first_needed(backup: BaseBackupInfo, segment_size: int) -> int:
    return first_needed(
        parse_lsn(backup.start_lsn),
        parse_lsn(backup.stop_lsn),
        segment_size,
        carried=backup.wal_method in SELF_CONTAINED_WAL_METHODS,
    )


def _ranges(numbers: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for n in numbers:
        if out and out[-1][1] == n - 1:
            out[-1] = (out[-1][0], n)
        else:
            out.append((n, n))
    return out


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _short(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


class WindowOptions(TypedDict, total=False):
    """What the window check takes besides where the backups and WAL are (either form)."""

    server_segment_size: int | None  # when no backup records its own
    last_archived_wal: str | None  # the server's pg_stat_archiver.last_archived_wal
    now: float | None  # the clock (tests)


def new_section(options: WindowOptions) -> tuple[Section, float]:
    now = options.get("now")
    return Section("base_backups", "Base backups"), time.time() if now is None else now


def base_backups_section(
    base_dir: Path | None, archive_dir: Path | None, thresholds: Thresholds, **options: Unpack[WindowOptions]
) -> Section:
    """Newest base backup, WAL continuity in the archive and the recoverable window."""
    section, now = new_section(options)
    server_segment_size, last_archived_wal = (
        options.get("server_segment_size"),
        options.get("last_archived_wal"),
    )
    if base_dir is None and archive_dir is None:
        section.lines.append("not checked (pass --base-dir and --archive-dir)")
        return section.skip("pass --base-dir and --archive-dir to check the recoverable window")

    backups: list[BaseBackupInfo] = []
    if base_dir is not None:
        backups = _check_backups(section, Path(base_dir), thresholds, now)
    segment_size = (backups[-1].wal_segment_size if backups else None) or server_segment_size
    segment_size = segment_size or DEFAULT_SEGMENT_SIZE

    if archive_dir is None:
        section.lines.append("WAL continuity not checked (pass --archive-dir)")
        return section
    archive_dir = Path(archive_dir)
    section.data["archive_dir"] = str(archive_dir)
    if not section.require_dir(
        archive_dir,
        "WAL archive directory",
        "check --archive-dir against the archive_command's destination",
        shown_as="WAL archive",
    ):
        return section
    try:
        index = ArchiveIndex.load(str(archive_dir), segment_size)
    except OSError as exc:
        section.problem(f"cannot read WAL archive {archive_dir}: {exc.strerror or exc}", "check the mount")
        return section
    check_archive(section, ArchiveReader(str(archive_dir)), index, backups, last_archived_wal, now)
    return section


class ArchiveReader:
    """How the window reads an archive directory; `repo_window.RepoReader` reads a repository."""

    checks = "read in full: SHA-256 record, page header (address, timeline, system identifier)"
    short = "SHA-256 records and page headers"
    option = "--archive-dir"

    def __init__(self, archive_dir: str) -> None:
        self.archive_dir = archive_dir

    def archived_at(self, archived: ArchivedFile) -> float:
        return Path(archived.path).stat().st_mtime

    def verify(self, archived: ArchivedFile) -> str | None:
        from pgtool.wal.checksum import verify_archived

        return verify_archived(self.archive_dir, archived)


def _check_backups(
    section: Section, base_dir: Path, thresholds: Thresholds, now: float
) -> list[BaseBackupInfo]:
    section.data["base_dir"] = str(base_dir)
    if not section.require_dir(
        base_dir, "base backup directory", "check --base-dir, or run pgtool basebackup --dest DIR"
    ):
        return []
    return report_backups(section, list_base_backups(base_dir), str(base_dir), "--dest DIR", thresholds, now)


def report_backups(
    section: Section,
    backups: list[BaseBackupInfo],
    where: str,
    option: str,
    thresholds: Thresholds,
    now: float,
) -> list[BaseBackupInfo]:
    """The backups' lines and data (`option`: where basebackup writes, for the hint)."""
    section.data["backups"] = [
        {
            "id": b.id,
            "start_time": b.start_time,
            "stop_time": b.stop_time,
            "start_lsn": b.start_lsn,
            "start_wal_file": b.start_wal_file,
            "stop_wal_file": b.stop_wal_file,
            "timeline": b.timeline,
            "size_bytes": b.size_bytes,
            "wal_method": b.wal_method,
            "parent": b.parent,
        }
        for b in backups
    ]
    backups = _restorable(section, backups)
    if not backups:
        section.lines.append(f"no complete base backup in {where}")
        section.problem(
            f"no complete base backup in {where}",
            f"run pgtool basebackup {option}; without one no point-in-time recovery is possible",
        )
        return []
    newest = backups[-1]
    age = now - newest.stop_datetime.timestamp()
    section.data["newest"] = newest.id
    section.data["newest_age_seconds"] = round(age, 1)
    section.lines.append(
        f"{len(backups)} kept, newest {newest.id} ({format_duration(age)} ago), oldest {backups[0].id}"
    )
    if age > thresholds.max_base_age:
        section.problem(
            f"newest base backup {newest.id} is {format_duration(age)} old "
            f"(limit {format_duration(thresholds.max_base_age)})",
            "check the basebackup CronJob's last runs and logs, then run pgtool basebackup",
        )
    return backups


def _restorable(section: Section, backups: list[BaseBackupInfo]) -> list[BaseBackupInfo]:
    """The backups that restore: an incremental whose chain lost a member is a problem, and gives no
    window (recover and the drill refuse it the same way, through the same `chain_of`)."""
    from pgtool.errors import OperationError
    from pgtool.physical.base_chain import chain_of

    usable = []
    for b in backups:
        try:
            chain_of(backups, b)
        except OperationError as exc:
            section.problem(exc.message, exc.hint or "take a new full base backup")
            continue
        usable.append(b)
    return usable


def check_archive(
    section: Section,
    reader: ArchiveReader,
    index: ArchiveIndex,
    backups: list[BaseBackupInfo],
    last_archived_wal: str | None,
    now: float,
) -> None:
    """WAL continuity along the recovery path, every segment of the window read, and the window."""
    segment_size = index.segment_size
    if not index.segments:
        section.lines.append("WAL archive holds no segments")
        section.data["window"] = None
        section.problem(
            "the WAL archive holds no segments",
            "check archive_mode and archive_command (pgtool archive-wal) and the Archiver section",
        )
        return
    path, backups = recovery_path(section, index, backups)
    if path is None:
        section.data["window"] = None
        return
    target = path[-1].tli
    for tli in index.unreachable_timelines(path):
        if tli not in index.histories:
            section.problem(
                f"timeline history file {tli:08X}.history is missing from the archive",
                "copy it from the server's pg_wal into the archive; recovery needs it",
            )
    on_chain = index.on_path(path)
    if not on_chain:
        section.problem(
            f"no archived segment lies on the recovery path (timelines {[s.tli for s in path]})",
            f"check that {reader.option} is where archive_command writes",
        )
        section.data["window"] = None
        return
    newest_segno = on_chain[-1]
    first_present = on_chain[0]
    newest_name = index.name(path, newest_segno)
    newest_file = index.segment(path, newest_segno)
    assert newest_file is not None
    newest_time = reader.archived_at(newest_file)
    start = min([_first_needed(b, segment_size) for b in backups], default=first_present)
    start = min(start, newest_segno)
    missing = index.missing(path, start, newest_segno)
    section.data.update(
        timeline=target,
        newest_wal=newest_name,
        newest_wal_archived_at=_iso(newest_time),
        segments=len(index.segments),
        missing_segments=[index.name(path, n) for n in missing],
    )
    section.lines.append(
        f"WAL archive: {len(index.segments)} segments, newest {newest_name} archived "
        f"{format_duration(now - newest_time)} ago, "
        + (f"{len(missing)} missing" if missing else "no gaps")
        + ("" if backups else " (no base backups to check against)")
    )
    if last_archived_wal and len(last_archived_wal) == 24:
        try:
            tli, segno = parse_segment_name(last_archived_wal, segment_size)
        except ValueError:
            tli, segno = 0, -1
        if (tli, segno) not in index.segments and segno > newest_segno:
            section.problem(
                f"the server reports {last_archived_wal} archived but the archive's newest is {newest_name}",
                f"check that {reader.option} is where archive_command writes",
            )
    for first, last in _ranges(missing)[:MAX_GAP_LINES]:
        first_name = index.name(path, first)
        count = last - first + 1
        affected = [b.id for b in backups if _first_needed(b, segment_size) <= last]
        section.problem(
            f"WAL segment {first_name}"
            + (f" and {count - 1} after it" if count > 1 else "")
            + " missing from the archive"
            + (f": recovery from base backup {', '.join(affected)} stops there" if affected else ""),
            "take a new base backup now (pgtool basebackup) and find out why the archive lost it",
        )
    if len(_ranges(missing)) > MAX_GAP_LINES:
        section.problem(
            f"{len(_ranges(missing)) - MAX_GAP_LINES} more gaps in the WAL archive",
            "see --format json (missing_segments) for the full list",
        )
    damaged = _verify_window(section, reader, index, path, backups, missing, segment_size, newest_segno)
    for segno, problem in damaged:
        name = index.name(path, segno)
        affected = [b.id for b in backups if _first_needed(b, segment_size) <= segno]
        section.problem(
            f"WAL segment {name} failed verification ({problem})"
            + (f": recovery from base backup {', '.join(affected)} stops there" if affected else ""),
            "take a new base backup now (pgtool basebackup) and restore the segment from another copy",
        )
    section.data["damaged_segments"] = [index.name(path, n) for n, _ in damaged]
    _window(section, backups, sorted(missing + [n for n, _ in damaged]), segment_size, newest_time)


def _verify_window(
    section: Section,
    reader: ArchiveReader,
    index: ArchiveIndex,
    path: list[Span],
    backups: list[BaseBackupInfo],
    missing: list[int],
    segment_size: int,
    newest_segno: int,
) -> list[tuple[int, str]]:
    """Read and check every segment the window relies on, newest first; the damaged ones.

    The scan stops at the first damaged segment: nothing older can be part of the window.
    """
    section.data["verified"] = None
    last_gap = max(missing, default=-1)
    firsts = [_first_needed(b, segment_size) for b in backups]
    oldest = min((f for f in firsts if f > last_gap), default=None)
    if oldest is None or oldest > newest_segno:
        section.lines.append("WAL not verified: no base backup's WAL chain to read")
        return []
    problems: list[tuple[int, str]] = []
    for span in path[1:]:
        history = index.histories.get(span.tli)
        problem = reader.verify(history) if history else None
        if problem:
            problems.append((span.begin // segment_size, f"its timeline history: {problem}"))
    checked = 0
    for segno in range(newest_segno, oldest - 1, -1):
        archived = index.segment(path, segno)
        if archived is None:
            continue  # already reported missing
        checked += 1
        problem = reader.verify(archived)
        if problem:
            problems.append((segno, problem))
            break
    first_read = index.name(path, segno)
    newest = index.name(path, newest_segno)
    section.data["verified"] = {
        "segments": checked,
        "from": first_read,
        "to": newest,
        "checks": reader.checks,
    }
    section.lines.append(
        f"WAL read and verified: {checked} segments {first_read}..{newest} ({reader.short})"
        + (f", {len(problems)} damaged" if problems else "")
    )
    return problems


def _window(
    section: Section, backups: list[BaseBackupInfo], missing: list[int], segment_size: int, newest_time: float
) -> None:
    if not backups:
        section.data["window"] = None
        return
    last_gap = max(missing, default=-1)
    usable = [b for b in backups if _first_needed(b, segment_size) > last_gap]
    window: dict[str, Any] | None = None
    if usable:
        begin = usable[0].stop_datetime.timestamp()
        window = {
            "from": _iso(begin),
            "to": _iso(newest_time),
            "seconds": round(max(newest_time - begin, 0), 1),
            "from_backup": usable[0].id,
        }
        section.lines.append(
            f"recoverable window: {_short(begin)} .. {_short(newest_time)} "
            f"({format_duration(newest_time - begin)}, from base backup {usable[0].id})"
        )
    else:
        section.lines.append("recoverable window: none reaches the newest archived WAL")
        section.problem(
            "no base backup can be recovered to the newest archived WAL "
            "(a segment after the newest backup is missing)",
            "take a new base backup now: pgtool basebackup",
        )
    section.data["window"] = window
