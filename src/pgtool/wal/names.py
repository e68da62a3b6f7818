"""WAL file names: parsing, kinds and segment arithmetic (stdlib only).

PostgreSQL names its WAL files (src/include/access/xlog_internal.h):

    segment   TTTTTTTTXXXXXXXXYYYYYYYY                  24 upper-case hex digits
    partial   TTTTTTTTXXXXXXXXYYYYYYYY.partial          last, incomplete segment of a timeline
    backup    TTTTTTTTXXXXXXXXYYYYYYYY.OOOOOOOO.backup  backup history file (OOOOOOOO: offset in segment)
    history   TTTTTTTT.history                          timeline history file

T is the timeline, X the "log" (high 32 bits of the segment number's LSN space) and Y the segment
within that log. With a segment size of S bytes there are 0x100000000 // S segments per log, so the
segment number is `log * (0x100000000 // S) + seg` and a segment starts at LSN `segno * S`.

Example:
    >>> n = parse_wal_name("000000010000000A000000FF")
    >>> (n.timeline, n.log, n.seg, n.kind)
    (1, 10, 255, 'segment')
    >>> n.segno(16 * 1024 * 1024)
    2815
    >>> segment_name(1, 2816, 16 * 1024 * 1024)
    '000000010000000B00000000'
"""

from __future__ import annotations

SEGMENT = "segment"
PARTIAL = "partial"
BACKUP = "backup"
HISTORY = "history"

DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024
MIN_SEGMENT_SIZE = 1024 * 1024
MAX_SEGMENT_SIZE = 1024 * 1024 * 1024

# No `re` and no dataclasses here: this module is on archive-wal's per-segment start-up path.
_HEX_DIGITS = frozenset("0123456789ABCDEF")


class WalName:
    """A parsed WAL file name (immutable).

    kind is one of "segment", "partial", "backup", "history". For "history" only `timeline` is
    meaningful (log and seg are 0). For "backup", `offset` is the byte offset in the segment where the
    base backup started. Instances compare and sort by (timeline, log, seg, kind, offset).
    """

    __slots__ = ("kind", "log", "offset", "seg", "timeline")
    kind: str
    log: int
    offset: int
    seg: int
    timeline: int

    def __init__(self, timeline: int, log: int, seg: int, kind: str, offset: int = 0) -> None:
        object.__setattr__(self, "timeline", timeline)
        object.__setattr__(self, "log", log)
        object.__setattr__(self, "seg", seg)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "offset", offset)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("WalName is immutable")

    def _key(self) -> tuple[int, int, int, str, int]:
        return (self.timeline, self.log, self.seg, self.kind, self.offset)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WalName) and self._key() == other._key()

    def __lt__(self, other: WalName) -> bool:
        return self._key() < other._key()

    def __le__(self, other: WalName) -> bool:
        return self._key() <= other._key()

    def __gt__(self, other: WalName) -> bool:
        return self._key() > other._key()

    def __ge__(self, other: WalName) -> bool:
        return self._key() >= other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"WalName({self.name!r})"

    @property
    def name(self) -> str:
        """The canonical file name (upper-case hex), e.g. "000000010000000000000003.partial"."""
        if self.kind == HISTORY:
            return f"{self.timeline:08X}.history"
        base = f"{self.timeline:08X}{self.log:08X}{self.seg:08X}"
        if self.kind == PARTIAL:
            return base + ".partial"
        if self.kind == BACKUP:
            return f"{base}.{self.offset:08X}.backup"
        return base

    @property
    def segment_name(self) -> str:
        """The 24-hex-digit segment this file belongs to (ValueError for history files)."""
        if self.kind == HISTORY:
            raise ValueError(f"{self.name} is a timeline history file, not part of a segment")
        return f"{self.timeline:08X}{self.log:08X}{self.seg:08X}"

    @property
    def has_page_header(self) -> bool:
        """True when the file starts with a WAL long page header (segments and .partial files)."""
        return self.kind in (SEGMENT, PARTIAL)

    def segno(self, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
        """The segment number (XLogSegNo) for `segment_size` bytes per segment."""
        if self.kind == HISTORY:
            raise ValueError(f"{self.name} is a timeline history file and has no segment number")
        return self.log * segments_per_log(segment_size) + self.seg

    def start_lsn(self, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
        """LSN of the first byte of this segment (for .backup: of the backup start)."""
        return self.segno(segment_size) * segment_size + (self.offset if self.kind == BACKUP else 0)


def _hex(text: str) -> int | None:
    return int(text, 16) if len(text) == 8 and _HEX_DIGITS.issuperset(text) else None


def _segment(text: str) -> tuple[int, int, int] | None:
    if len(text) != 24 or not _HEX_DIGITS.issuperset(text):
        return None
    return int(text[:8], 16), int(text[8:16], 16), int(text[16:], 16)


def parse_wal_name(name: str) -> WalName:
    """Parse a WAL file name (segment, .partial, .backup or .history).

    Only PostgreSQL's exact spelling is accepted (upper-case hex, no directory, no compression suffix).
    Raises ValueError for anything else.
    """
    parts = name.split(".")
    seg = _segment(parts[0])
    if seg is not None:
        if len(parts) == 1:
            return WalName(*seg, SEGMENT)
        if len(parts) == 2 and parts[1] == "partial":
            return WalName(*seg, PARTIAL)
        if len(parts) == 3 and parts[2] == "backup":
            offset = _hex(parts[1])
            if offset is not None:
                return WalName(*seg, BACKUP, offset)
    elif len(parts) == 2 and parts[1] == "history":
        tli = _hex(parts[0])
        if tli is not None:
            return WalName(tli, 0, 0, HISTORY)
    raise ValueError(
        f"{name!r} is not a WAL file name (expected 24 hex digits, optionally .partial or .OFFSET.backup, "
        "or TTTTTTTT.history)"
    )


def is_wal_name(name: str) -> bool:
    """True when `name` is any WAL file name parse_wal_name accepts."""
    try:
        parse_wal_name(name)
    except ValueError:
        return False
    return True


def check_segment_size(segment_size: int) -> int:
    """Return segment_size if PostgreSQL allows it (power of two, 1 MiB..1 GiB), else raise ValueError."""
    if (
        segment_size < MIN_SEGMENT_SIZE
        or segment_size > MAX_SEGMENT_SIZE
        or segment_size & (segment_size - 1) != 0
    ):
        raise ValueError(
            f"invalid WAL segment size {segment_size}: must be a power of two from 1 MiB to 1 GiB"
        )
    return segment_size


def segments_per_log(segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """Segments per "log" id (XLogSegmentsPerXLogId): 256 for 16 MiB segments."""
    return 0x100000000 // check_segment_size(segment_size)


def segment_name(timeline: int, segno: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> str:
    """The 24-hex-digit name of segment number `segno` on `timeline` (XLogFileName)."""
    per_log = segments_per_log(segment_size)
    return f"{timeline:08X}{segno // per_log:08X}{segno % per_log:08X}"


def history_name(timeline: int) -> str:
    """The history file name of `timeline`, e.g. "00000002.history"."""
    return f"{timeline:08X}.history"


def parse_lsn(text: str) -> int:
    """Parse an LSN as PostgreSQL prints it ("16/B374D848") into an integer. Raises ValueError."""
    high, sep, low = text.strip().partition("/")
    if not sep or not high or not low or len(high) > 8 or len(low) > 8:
        raise ValueError(f"{text!r} is not an LSN (expected e.g. 16/B374D848)")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(lsn: int) -> str:
    """Format an integer LSN the way PostgreSQL does ("16/B374D848")."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def segno_of_lsn(lsn: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """The segment number containing `lsn` (XLByteToSeg)."""
    return lsn // check_segment_size(segment_size)


def segment_of_lsn(timeline: int, lsn: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> str:
    """The name of the segment on `timeline` that contains `lsn` (what pg_walfile_name returns)."""
    return segment_name(timeline, segno_of_lsn(lsn, segment_size), segment_size)


def segment_range(
    timeline: int, first_segno: int, last_segno: int, segment_size: int = DEFAULT_SEGMENT_SIZE
) -> list[str]:
    """Names of segments first_segno..last_segno inclusive on one timeline (for continuity checks)."""
    return [segment_name(timeline, n, segment_size) for n in range(first_segno, last_segno + 1)]
