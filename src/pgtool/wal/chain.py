"""One model of the WAL archive as recovery sees it: which file recovery reads at each position, where
the archive ends, what is missing, and which WAL a base backup needs (stdlib only).

`recover` (through `pgtool.recovery.archive_continuity`), `verify --base`, retention and `status` all ask
this module, so they cannot disagree about a timeline switch or a gap.

Timeline rule, PostgreSQL's own for `recovery_target_timeline = 'latest'`: starting from the timeline
recovery begins on (the base backup's), probe the history files of T+1, T+2, ... and stop at the first
one missing (findNewestTimeLine). The newest found is the recovery timeline; its history gives the
path: each ancestor is current up to its switch point, and the segment holding a switch point, and every
later one, is read from the newer timeline (XLogFileReadAnyTLI). Segments of timelines off the path are
never read by recovery.

Example:
    index = ArchiveIndex.load("/wal-archive", 16 * 1024 * 1024)
    path = index.path(backup_timeline, backup_start_lsn)
    first = first_needed(start_lsn, stop_lsn, seg_size, carried=True)
    end = index.end_segno(path, first)
    gaps = index.missing(path, first, end)
"""

from __future__ import annotations

from pgtool.wal.archive import ArchivedFile, iter_content, list_archive
from pgtool.wal.names import HISTORY, SEGMENT, format_lsn, segment_name
from pgtool.wal.timelines import HistoryEntry, parse_history


class ChainError(ValueError):
    """The archive cannot serve a recovery from the given start (e.g. it is not on the history)."""


class Span:
    """Timeline `tli` is current from LSN `begin` (0 for the first) up to `end` (None: still current)."""

    __slots__ = ("begin", "end", "tli")

    def __init__(self, tli: int, begin: int, end: int | None) -> None:
        self.tli = tli
        self.begin = begin
        self.end = end

    def __repr__(self) -> str:
        end = "current" if self.end is None else format_lsn(self.end)
        return f"Span(tli={self.tli}, {format_lsn(self.begin)}..{end})"


def first_needed(start_lsn: int, stop_lsn: int, segment_size: int, *, carried: bool) -> int:
    """The first segment number a base backup needs from the archive.

    carried: the backup holds its own WAL from start to stop (pg_basebackup --wal-method stream or
    fetch), so the archive is needed from the stop segment on (recovery continues in it past the
    backup's end); otherwise from the start segment.
    """
    return (stop_lsn if carried else start_lsn) // segment_size


class ArchiveIndex:
    """The archive's WAL files by position: segments[(tli, segno)], histories[tli], partials."""

    def __init__(self, archive_dir: str, segment_size: int, files: list[ArchivedFile]) -> None:
        self.archive_dir = archive_dir
        self.segment_size = segment_size
        self.segments: dict[tuple[int, int], ArchivedFile] = {}
        self.histories: dict[int, ArchivedFile] = {}
        self.others: list[ArchivedFile] = []
        for item in files:
            if item.wal.kind == SEGMENT:
                self.segments[(item.wal.timeline, item.wal.segno(segment_size))] = item
            elif item.wal.kind == HISTORY:
                self.histories[item.wal.timeline] = item
            else:
                self.others.append(item)
        self._history_cache: dict[int, list[HistoryEntry]] = {}

    @classmethod
    def load(cls, archive_dir: str, segment_size: int) -> ArchiveIndex:
        """Index `archive_dir` (OSError when it cannot be listed)."""
        return cls(str(archive_dir), segment_size, list_archive(str(archive_dir)))

    @property
    def segment_timelines(self) -> set[int]:
        return {tli for tli, _ in self.segments}

    def recovery_timeline(self, start_tli: int) -> int:
        """The newest timeline reachable from `start_tli` by consecutive history files."""
        target = start_tli
        while target + 1 in self.histories:
            target += 1
        return target

    def history(self, tli: int) -> list[HistoryEntry]:
        """The parsed history of `tli` (ValueError, including a damaged compressed file, or OSError)."""
        if tli not in self._history_cache:
            text = b"".join(iter_content(self.histories[tli])).decode("utf-8", "replace")
            self._history_cache[tli] = parse_history(text)
        return self._history_cache[tli]

    def path(self, start_tli: int, start_lsn: int | None = None) -> list[Span]:
        """The timelines recovery starting on `start_tli` (at `start_lsn`) follows, oldest first.

        Raises ChainError when `start_tli` at `start_lsn` is not on the recovery timeline's history
        (it forked off before the start), ValueError/OSError when a history file cannot be read.
        """
        target = self.recovery_timeline(start_tli)
        if target == start_tli:
            return [Span(start_tli, 0, None)]
        spans, begin = [], 0
        for entry in self.history(target):
            spans.append(Span(entry.parent, begin, entry.switchpoint))
            begin = entry.switchpoint
        spans.append(Span(target, begin, None))
        own = [s for s in spans if s.tli == start_tli]
        if not own or (start_lsn is not None and own[0].end is not None and own[0].end <= start_lsn):
            where = f" at {format_lsn(start_lsn)}" if start_lsn is not None else ""
            raise ChainError(f"timeline {start_tli}{where} is not on the history of timeline {target}")
        return spans[spans.index(own[0]) :]

    def owner(self, path: list[Span], segno: int) -> int:
        """The timeline whose copy of segment `segno` recovery reads."""
        owner = path[0].tli
        for span in path:
            if span.begin // self.segment_size <= segno:
                owner = span.tli
        return owner

    def name(self, path: list[Span], segno: int) -> str:
        return segment_name(self.owner(path, segno), segno, self.segment_size)

    def segment(self, path: list[Span], segno: int) -> ArchivedFile | None:
        """The archived file recovery reads for `segno`, or None when it is missing."""
        return self.segments.get((self.owner(path, segno), segno))

    def on_path(self, path: list[Span]) -> list[int]:
        """Segment numbers archived on the timeline that owns them, ascending."""
        return sorted(segno for (tli, segno) in self.segments if self.owner(path, segno) == tli)

    def end_segno(self, path: list[Span], first: int) -> int | None:
        """The newest segment at or after `first` that recovery along `path` can read, or None."""
        return max((n for n in self.on_path(path) if n >= first), default=None)

    def missing(self, path: list[Span], first: int, last: int, carried: range = range(0)) -> list[int]:
        """Segment numbers first..last that recovery needs but the archive lacks (carried: present)."""
        return [n for n in range(first, last + 1) if n not in carried and self.segment(path, n) is None]

    def unreachable_timelines(self, path: list[Span]) -> list[int]:
        """Timelines with archived segments that recovery along `path` never reads (newer than it)."""
        newest = path[-1].tli
        return sorted(t for t in self.segment_timelines if t > newest)
