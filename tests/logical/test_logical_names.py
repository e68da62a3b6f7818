"""Dump file names, stamps and throwaway database names: pure functions, no server needed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pgtool.logical import dumps
from pgtool.logical.verify_throwaway import new_token, throwaway_name


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


def test_throwaway_names_fit_postgres_identifiers_and_carry_the_run_token():
    token = new_token()
    assert throwaway_name("shop", token) == f"pgtool_verify_{token}_shop"
    assert throwaway_name("shop", token) != throwaway_name("shop", new_token())
    long_a, long_b = "a" * 60 + "x", "a" * 60 + "y"
    for name in (long_a, long_b, "ü" * 40, "x\ry", "x\ny", "caf\udce9"):
        made = throwaway_name(name, token)
        assert len(made.encode()) <= 63 and made.isascii() and made.isprintable(), made
        assert made.startswith(f"pgtool_verify_{token}_")
    assert throwaway_name(long_a, token) != throwaway_name(long_b, token)
    assert throwaway_name("x\ry", token) != throwaway_name("x\ny", token)
