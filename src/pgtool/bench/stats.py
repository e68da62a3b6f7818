"""Latency statistics of one variant: percentiles by linear interpolation, mean, all in nanoseconds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(sorted_values: Sequence[int | float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values, interpolating between closest ranks.

    The same definition as numpy's default ("linear"), so p50 of an even count is the midpoint.
    Raises ValueError on an empty sequence.
    """
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    rank = (len(sorted_values) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    fraction = rank - low
    return float(sorted_values[low]) + (float(sorted_values[high]) - float(sorted_values[low])) * fraction


@dataclass(frozen=True)
class Summary:
    """p50/p95/p99/mean/min/max of a variant's per-iteration timings, in milliseconds."""

    count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float

    @classmethod
    def of(cls, samples_ns: Sequence[int]) -> Summary:
        """Summarise timings taken with `time.perf_counter_ns` (ValueError when there are none)."""
        values = sorted(samples_ns)
        if not values:
            raise ValueError("no timings to summarise")
        ms = 1e-6
        return cls(
            count=len(values),
            p50_ms=percentile(values, 50) * ms,
            p95_ms=percentile(values, 95) * ms,
            p99_ms=percentile(values, 99) * ms,
            mean_ms=sum(values) / len(values) * ms,
            min_ms=values[0] * ms,
            max_ms=values[-1] * ms,
        )

    def as_dict(self) -> dict[str, float | int]:
        return {
            "iterations": self.count,
            "p50_ms": round(self.p50_ms, 4),
            "p95_ms": round(self.p95_ms, 4),
            "p99_ms": round(self.p99_ms, 4),
            "mean_ms": round(self.mean_ms, 4),
            "min_ms": round(self.min_ms, 4),
            "max_ms": round(self.max_ms, 4),
        }


def speedup(baseline: Summary, optimized: Summary) -> float:
    """How many times faster the optimized variant's median is (p50 baseline / p50 optimized)."""
    if optimized.p50_ms <= 0:
        return math.inf
    return baseline.p50_ms / optimized.p50_ms
