"""WAL names, LSNs, timeline history and the archive listing, as base backups and PITR need them.

A thin layer over `pgtool.wal` (names, archive layout, decompression), which owns the archive format
that `pgtool archive-wal` writes: this module adds what retention, recovery and the base drill need on
top (segment numbers per timeline, every stored copy of a name for pruning). History parsing is
`pgtool.wal.timelines`, the timeline and gap model `pgtool.wal.chain`; both are re-exported or used here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pgtool.wal import archive as wal_archive
from pgtool.wal.names import (
    DEFAULT_SEGMENT_SIZE,
    HISTORY,
    format_lsn,
    history_name,
    parse_lsn,
    parse_wal_name,
    segment_name,
    segno_of_lsn,
)
from pgtool.wal.timelines import HistoryEntry, parse_history

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "ArchivedFile",
    "HistoryEntry",
    "format_lsn",
    "history_name",
    "list_archive",
    "parse_history",
    "parse_lsn",
    "parse_segment_name",
    "read_archived_text",
    "segment_name",
    "segno_of_lsn",
    "stored_copies",
]


def parse_segment_name(name: str, segment_size: int = DEFAULT_SEGMENT_SIZE) -> tuple[int, int]:
    """`'000000010000000000000003'` -> (timeline 1, segno 3). ValueError if not a segment name."""
    wal = parse_wal_name(name)
    if wal.kind != "segment":
        raise ValueError(f"not a WAL segment name: {name!r}")
    return wal.timeline, wal.segno(segment_size)


@dataclass(frozen=True)
class ArchivedFile:
    """One WAL file in the archive.

    name: the file name on disk (with a compression suffix if any); wal_name: PostgreSQL's name;
    kind: "segment", "partial", "backup" or "history"; segment: the 24-hex-digit segment it belongs to
    (None for history files); timeline: its timeline.
    """

    name: str
    wal_name: str
    kind: str
    segment: str | None
    timeline: int


def list_archive(archive_dir: Path) -> list[ArchivedFile]:
    """Every WAL file in `archive_dir` (temporaries and foreign files skipped), in WAL order."""
    found = []
    for item in wal_archive.list_archive(str(archive_dir)):
        wal = item.wal
        found.append(
            ArchivedFile(
                name=os.path.basename(item.path),
                wal_name=item.name,
                kind=wal.kind,
                segment=None if wal.kind == HISTORY else wal.segment_name,
                timeline=wal.timeline,
            )
        )
    return found


def stored_copies(archive_dir: Path, wal_name: str) -> list[Path]:
    """Every file storing `wal_name` (plain and compressed copies), then its checksum record.

    Existing ones only; the record comes last, so a deletion stopped midway never leaves a WAL file
    without its record.
    """
    from pgtool.wal.checksum import SIDECAR_SUFFIX

    names = [*wal_archive.stored_names(wal_name), wal_name + SIDECAR_SUFFIX]
    return [p for n in names if (p := Path(archive_dir) / n).exists()]


def read_archived_text(archive_dir: Path, wal_name: str | None = None) -> str:
    """A small archived file (`.history`, `.backup`) as text, decompressed and verified.

    Either (archive_dir, wal_name), or the path of the stored file alone (`DIR/00000002.history.zst`).
    """
    if wal_name is None:
        stored = Path(archive_dir)
        content = b"".join(wal_archive.iter_content(str(stored)))
    else:
        content = wal_archive.read_archived(str(archive_dir), wal_name)
    return content.decode("utf-8", "replace")
