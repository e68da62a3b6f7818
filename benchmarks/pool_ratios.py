"""Pool the rounds of several `backup_verify.py --markdown` runs into one median ratio per goal.

One run of 11 rounds is good to a few percent on a noisy machine; the rounds of several runs, pooled,
narrow the interval. Reads each file's "Raw times" line (the per-round times of both sides) and prints
the pooled median of the per-round ratios with a bootstrap 90% interval.

Usage: python benchmarks/pool_ratios.py RUN.md [RUN.md ...]
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from _stats import median_interval, paired_ratios
from backup_verify import BACKUP_GOAL, VERIFY_GOAL

PAIRS = {"backup": ("backup", "pg_dump", BACKUP_GOAL), "verify": ("verify", "pg_restore", VERIFY_GOAL)}


def raw_times(markdown: Path) -> dict[str, list[float]]:
    """The per-round times of one run, by side (the run's own, not the pg_restore inside verify)."""
    line = next(x for x in markdown.read_text().splitlines() if x.startswith("Raw times (s):"))
    line = line.removeprefix("Raw times (s):").split("; pg_restore inside each side:")[0]
    times = {}
    for part in line.split(";"):
        name, values = part.rsplit(":", 1)
        times[name.strip()] = [float(v) for v in values.split(",")]
    return times


def main(paths: list[str]) -> int:
    if not paths:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    runs = [raw_times(Path(p)) for p in paths]
    for label, (side, reference, goal) in PAIRS.items():
        ratios = [r for run in runs for r in paired_ratios(run[side], run[reference])]
        pooled = statistics.median(ratios)
        print(
            f"{label}: {pooled:.3f}x pooled over {len(ratios)} rounds of {len(runs)} runs, "
            f"90% interval {median_interval(ratios)} (goal <= {goal:.2f}x)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
