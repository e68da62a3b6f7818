#!/usr/bin/env python3
"""Run `pgtool bench` and print each scenario's speedup beside the committed reference run's.

    python benchmarks/bench_rewrites.py [pgtool bench options, e.g. --iterations 100 --dsn ...]

Reports ratios only (baseline p50 / optimized p50, both measured in this run with A/B alternation), never
absolute times against a threshold: machines differ, ratios of alternated runs travel. Exit status is
pgtool's own (0 when the run succeeded), whatever the ratios.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REFERENCE = Path(__file__).resolve().parent.parent / "benchdata" / "reference" / "results.json"
# The issue's reference speedups (the production system's measurements).
ISSUE_REFERENCE = {
    "order_create_20": 3.5,
    "product_search": 1.9,
    "order_create_5": 1.8,
    "category_filter": 1.3,
}


def main(argv: list[str]) -> int:
    pgtool = Path(sys.executable).parent / "pgtool"
    cmd = [str(pgtool) if pgtool.exists() else "pgtool", "bench", "--format", "json", *argv]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        return proc.returncode
    now = json.loads(proc.stdout)
    ref = json.loads(REFERENCE.read_text()) if REFERENCE.exists() else {"scenarios": [], "rtt_ms": None}
    ref_by_name = {s["name"]: s for s in ref["scenarios"]}
    print(f"round trip p50: now {now['rtt_ms']:.3f} ms, reference run {ref.get('rtt_ms') or '-'} ms")
    print(f"{'scenario':<22}{'now':>8}{'ref run':>9}{'issue':>7}")
    for s in now["scenarios"]:
        ref_s = ref_by_name.get(s["name"])
        ref_text = f"{ref_s['speedup']:.2f}x" if ref_s else "-"
        issue = ISSUE_REFERENCE.get(s["name"])
        issue_text = f"{issue:.1f}x" if issue else "-"
        print(f"{s['name']:<22}{s['speedup']:>7.2f}x{ref_text:>9}{issue_text:>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
