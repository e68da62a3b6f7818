"""Duration parsing and formatting for status thresholds."""

from __future__ import annotations

import pytest

from pgtool.status.durations import format_bytes, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("26h", 93600), ("15m", 900), ("8d", 691200), ("1h30m", 5400), ("45", 45), ("0s", 0), ("1w", 604800)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5x", "h", "1h 30m", "-5m"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_formats():
    assert format_duration(42) == "42s"
    assert format_duration(3 * 3600 + 5 * 60) == "3h05m"
    assert format_duration(2 * 86400 + 4 * 3600) == "2d04h"
    assert format_duration(None) == "-"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(12) == "12 B"
