"""WAL file names, segment arithmetic and the long page header, on names and files PostgreSQL makes."""

from __future__ import annotations

import pytest

from pgtool.wal.header import parse_long_header, read_long_header
from pgtool.wal.names import (
    BACKUP,
    HISTORY,
    PARTIAL,
    SEGMENT,
    format_lsn,
    is_wal_name,
    parse_lsn,
    parse_wal_name,
    segment_name,
    segment_of_lsn,
    segment_range,
    segments_per_log,
)

MiB = 1024 * 1024


@pytest.mark.parametrize(
    ("name", "kind", "tli", "log", "seg"),
    [
        ("000000010000000A000000FF", SEGMENT, 1, 10, 255),
        ("000000020000000000000003.partial", PARTIAL, 2, 0, 3),
        ("000000010000000000000002.00000028.backup", BACKUP, 1, 0, 2),
        ("0000000A.history", HISTORY, 10, 0, 0),
    ],
)
def test_parse_every_kind_and_round_trip(name, kind, tli, log, seg):
    wal = parse_wal_name(name)
    assert (wal.kind, wal.timeline, wal.log, wal.seg) == (kind, tli, log, seg)
    assert wal.name == name
    assert wal.has_page_header == (kind in (SEGMENT, PARTIAL))


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "000000010000000000000001.zst",
        "00000001000000000000000g",
        "000000010000000a00000001",
        "0000000100000000000001",
        "../000000010000000000000001",
        "1.history",
        "RECOVERYXLOG",
    ],
)
def test_rejects_what_postgresql_never_names(bad):
    assert not is_wal_name(bad)
    with pytest.raises(ValueError):
        parse_wal_name(bad)


def test_segment_arithmetic_depends_on_segment_size():
    assert segments_per_log(16 * MiB) == 256
    assert segments_per_log(64 * MiB) == 64
    assert parse_wal_name("000000010000000A000000FF").segno(16 * MiB) == 10 * 256 + 255
    assert segment_name(1, 10 * 256 + 256, 16 * MiB) == "000000010000000B00000000"
    assert segment_name(3, 65, 64 * MiB) == "000000030000000100000001"
    assert segment_of_lsn(1, parse_lsn("16/B374D848"), 16 * MiB) == "0000000100000016000000B3"
    assert format_lsn(parse_lsn("16/B374D848")) == "16/B374D848"
    assert segment_range(1, 255, 257) == [
        "0000000100000000000000FF",
        "000000010000000100000000",
        "000000010000000100000001",
    ]
    assert parse_wal_name("000000010000000000000002.00000028.backup").start_lsn() == 2 * 16 * MiB + 0x28
    with pytest.raises(ValueError):
        segments_per_log(3 * MiB)


@pytest.mark.all_versions
def test_long_header_of_a_real_segment_matches_the_server(cluster, segment):
    path, name = segment
    header = read_long_header(str(path))
    with cluster.connect(pin="off") as conn:
        sysid = conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()[0]
        seg_size = int(
            conn.execute("SELECT setting FROM pg_settings WHERE name='wal_segment_size'").fetchone()[0]
        )
    assert header.system_identifier == sysid
    assert header.segment_size == seg_size
    assert header.page_address == parse_wal_name(name).segno(seg_size) * seg_size
    assert header.pg_major == cluster.binaries.major
    with pytest.raises(ValueError):
        parse_long_header(b"\0" * 40)
