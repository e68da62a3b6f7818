"""The long page header at the start of every WAL segment (stdlib only).

Layout (src/include/access/xlog_internal.h, identical in PostgreSQL 15 through 18; native byte order,
little-endian on every platform pgtool targets, MAXALIGN 8):

    offset size  field
         0    2  xlp_magic        XLOG_PAGE_MAGIC, changes with each major version's WAL format
         2    2  xlp_info         flag bits; XLP_LONG_HEADER (0x0002) on a segment's first page
         4    4  xlp_tli          timeline of the first record on the page
         8    8  xlp_pageaddr     LSN of this page
        16    4  xlp_rem_len      bytes of a continued record
        20    4  (padding: sizeof(XLogPageHeaderData) is MAXALIGNed to 24)
        24    8  xlp_sysid        system identifier from pg_control
        32    4  xlp_seg_size     wal_segment_size, as a cross-check
        36    4  xlp_xlog_blcksz  XLOG_BLCKSZ, as a cross-check

Only segments and `.partial` files start with this header; `.history` and `.backup` files are text.
"""

from __future__ import annotations

LONG_HEADER_SIZE = 40
XLP_LONG_HEADER = 0x0002

# XLOG_PAGE_MAGIC per major version, only to name the version in messages; any magic is accepted.
PAGE_MAGIC_VERSIONS = {0xD10D: 14, 0xD110: 15, 0xD113: 16, 0xD116: 17, 0xD118: 18}


class WalHeaderError(ValueError):
    """The bytes are not the long page header of a WAL segment."""


class WalSegmentHeader:
    """The fields of a segment's long page header that pgtool uses (a plain class: no dataclasses
    import on archive-wal's start-up path)."""

    __slots__ = (
        "block_size",
        "info",
        "magic",
        "page_address",
        "segment_size",
        "system_identifier",
        "timeline",
    )

    def __init__(self, data: bytes) -> None:
        def field(offset: int, size: int) -> int:
            return int.from_bytes(data[offset : offset + size], "little")

        self.magic = field(0, 2)
        self.info = field(2, 2)
        self.timeline = field(4, 4)
        self.page_address = field(8, 8)
        self.system_identifier = field(24, 8)
        self.segment_size = field(32, 4)
        self.block_size = field(36, 4)

    def __repr__(self) -> str:
        return (
            f"WalSegmentHeader(magic=0x{self.magic:04X}, timeline={self.timeline}, "
            f"page_address=0x{self.page_address:X}, system_identifier={self.system_identifier}, "
            f"segment_size={self.segment_size}, block_size={self.block_size})"
        )

    @property
    def pg_major(self) -> int | None:
        """The PostgreSQL major version that writes this page magic, when known."""
        return PAGE_MAGIC_VERSIONS.get(self.magic)


def parse_long_header(data: bytes) -> WalSegmentHeader:
    """Parse the first LONG_HEADER_SIZE bytes of a WAL segment.

    Raises WalHeaderError when data is too short, the XLP_LONG_HEADER flag is missing, or the segment
    or block size is not one PostgreSQL can produce (a power of two, 1 MiB..1 GiB / 1..64 KiB).
    """
    if len(data) < LONG_HEADER_SIZE:
        raise WalHeaderError(f"too short for a WAL page header ({len(data)} bytes)")
    header = WalSegmentHeader(data)
    seg_size, blcksz, pageaddr = header.segment_size, header.block_size, header.page_address
    if not header.info & XLP_LONG_HEADER:
        raise WalHeaderError("no long page header (XLP_LONG_HEADER not set): not the start of a WAL segment")
    if not _power_of_two_between(seg_size, 1 << 20, 1 << 30) or not _power_of_two_between(
        blcksz, 1 << 10, 1 << 16
    ):
        raise WalHeaderError(
            f"implausible header (segment size {seg_size}, block size {blcksz}): not a WAL segment"
        )
    if pageaddr % seg_size != 0:
        raise WalHeaderError(f"page address {pageaddr:X} is not at a segment boundary: not a segment start")
    return header


def read_long_header(path: str) -> WalSegmentHeader:
    """Read and parse the long page header of the (uncompressed) WAL file at path.

    Raises OSError when the file cannot be read and WalHeaderError when it is not a WAL segment.
    """
    with open(path, "rb") as f:
        return parse_long_header(f.read(LONG_HEADER_SIZE))


def _power_of_two_between(value: int, low: int, high: int) -> bool:
    return low <= value <= high and value & (value - 1) == 0
