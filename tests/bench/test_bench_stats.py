"""Statistics and progress output, without a database."""

from __future__ import annotations

import io

import pytest

from pgtool.bench.progress import Progress
from pgtool.bench.stats import Summary, percentile, speedup


def test_percentile_interpolates_between_ranks():
    values = [1, 2, 3, 4]
    assert percentile(values, 50) == 2.5
    assert percentile(values, 0) == 1
    assert percentile(values, 100) == 4
    assert percentile(list(range(1, 101)), 95) == pytest.approx(95.05)
    assert percentile([7], 99) == 7


def test_percentile_rejects_nothing_and_bad_q():
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_summary_in_milliseconds_and_speedup_of_p50():
    base = Summary.of([4_000_000, 2_000_000, 3_000_000])  # ns
    assert base.p50_ms == pytest.approx(3.0)
    assert base.mean_ms == pytest.approx(3.0)
    assert base.min_ms == pytest.approx(2.0) and base.max_ms == pytest.approx(4.0)
    fast = Summary.of([1_000_000] * 3)
    assert speedup(base, fast) == pytest.approx(3.0)
    with pytest.raises(ValueError):
        Summary.of([])


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_tty():
    tty = FakeTty()
    bar = Progress("order_create_20", 4, stream=tty)
    for _ in range(4):
        bar.advance()
    bar.finish("3.50x")
    assert "order_create_20" in tty.getvalue()
    assert "4/4" in tty.getvalue() and "3.50x" in tty.getvalue()

    pipe = io.StringIO()
    quiet = Progress("order_create_20", 4, stream=pipe)
    quiet.advance(4)
    quiet.finish("3.50x")
    assert pipe.getvalue() == ""
