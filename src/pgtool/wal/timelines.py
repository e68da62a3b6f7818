"""Timeline history files: parsing, and where a newer timeline forked from an older one (stdlib only).

A history file `TTTTTTTT.history` lists, one line per ancestor, `parentTLI<TAB>switchpoint<TAB>reason`:
timeline `parent` was current up to LSN `switchpoint`, where its child took over. After a failover
the new primary writes `00000002.history` (`1  0/5000000 ...`): WAL of timeline 1 beyond 0/5000000
belongs to no history recovery can follow, and a primary still writing it is a split brain.
"""

from __future__ import annotations

from pgtool.wal.names import HISTORY, history_name, parse_lsn


class HistoryEntry:
    """One line of a history file: timeline `parent` ended (switched) at LSN `switchpoint`."""

    __slots__ = ("parent", "switchpoint")

    def __init__(self, parent: int, switchpoint: int) -> None:
        self.parent = parent
        self.switchpoint = switchpoint

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HistoryEntry) and (self.parent, self.switchpoint) == (
            other.parent,
            other.switchpoint,
        )

    def __hash__(self) -> int:
        return hash((self.parent, self.switchpoint))

    def __repr__(self) -> str:
        return f"HistoryEntry(parent={self.parent}, switchpoint=0x{self.switchpoint:X})"


def parse_history(text: str) -> list[HistoryEntry]:
    """Parse a `.history` file's text (`#` comments and blank lines skipped). Raises ValueError."""
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) < 2 or not fields[0].isdigit():
            raise ValueError(f"malformed timeline history line: {line!r}")
        entries.append(HistoryEntry(int(fields[0]), parse_lsn(fields[1])))
    return entries


def fork_point(archive_dir: str, timeline: int) -> tuple[int, int] | None:
    """Where the archive's timeline `timeline + 1` forked from `timeline`: (child, switchpoint LSN).

    None when the archive holds no history of timeline + 1, or when that history does not fork from
    `timeline`. O(1): probes one name (in each stored form) instead of listing the archive.
    Raises CorruptArchiveError/OSError/ValueError when the history exists but cannot be read.
    """
    from pgtool.wal.archive import find_archived, iter_content

    child = timeline + 1
    archived = find_archived(archive_dir, history_name(child))
    if archived is None or archived.wal.kind != HISTORY:
        return None
    text = b"".join(iter_content(archived)).decode("utf-8", "replace")
    for entry in parse_history(text):
        if entry.parent == timeline:
            return child, entry.switchpoint
    return None
