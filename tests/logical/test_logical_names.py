"""Dump file names, stamps and throwaway database names: pure functions, no server needed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pgtool.backup import dumps
from pgtool.backup.verify_dumps import throwaway_name


def test_stamps_round_trip_in_utc():
    when = datetime(2026, 11, 24, 16, 30, 5, tzinfo=UTC)
    assert dumps.format_stamp(when) == "20261124T163005Z"
    assert dumps.parse_stamp("20261124T163005Z") == when


def test_odd_database_names_make_safe_file_names():
    for name in (
        "shop",
        "a/b",
        "..",
        ".hidden",
        "100%",
        "tab\there",
        "ünïcode",
        "with-dash-20200101T000000Z",
    ):
        encoded = dumps.encode_name(name)
        assert "/" not in encoded and not encoded.startswith(".") and "\t" not in encoded
        assert dumps.decode_name(encoded) == name
    assert dumps.encode_name("shop") == "shop"


def test_only_exact_names_match():
    d = Path("/x/shop")
    assert dumps.match_dump_file(d / "shop-20261124T163005Z.dump") == "20261124T163005Z"
    for name in (
        "shop-20261124T163005Z.dump.sha256",
        ".shop-20261124T163005Z.dump.partial",
        "shop-20261124T1630Z.dump",
        "other-20261124T163005Z.dump",
        "shop-20261124T163005Z.dump.bak",
    ):
        assert dumps.match_dump_file(d / name) is None, name
    # a database whose name looks like another's name plus a stamp still matches only its own directory
    tricky = Path("/x/shop-20200101T000000Z")
    assert dumps.match_dump_file(tricky / "shop-20200101T000000Z-20261124T163005Z.dump") == "20261124T163005Z"


def test_list_dumps_of_a_missing_directory_is_empty(tmp_path):
    assert dumps.list_dumps(tmp_path / "nowhere") == {}


def test_throwaway_names_fit_postgres_identifiers():
    stamp = "20261124T163005Z"
    assert throwaway_name("shop", stamp) == "pgtool_verify_shop_20261124T163005Z"
    long_a, long_b = "a" * 60 + "x", "a" * 60 + "y"
    for name in (long_a, long_b, "ü" * 40):
        assert len(throwaway_name(name, stamp).encode()) <= 63
        assert throwaway_name(name, stamp).startswith("pgtool_verify_")
    assert throwaway_name(long_a, stamp) != throwaway_name(long_b, stamp)
