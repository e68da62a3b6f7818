"""benchmarks/pool_ratios.py reads the runs `backup_verify.py --markdown` wrote, as kept in benchdata."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_pooling_the_kept_runs_reproduces_the_published_figures():
    runs = sorted(str(p) for p in (ROOT / "benchdata" / "backup-verify-runs").glob("230mb-*.md"))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "pool_ratios.py"), *runs],
        capture_output=True,
        text=True,
        check=True,
    )
    published = (ROOT / "benchdata" / "backup-verify.md").read_text()
    lines = proc.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["backup", "verify"]
    for line in lines:
        assert f"pooled over {11 * len(runs)} rounds of {len(runs)} runs" in line
        pooled = line.split()[1]  # e.g. "1.038x"
        assert f"**{pooled}**" in published, f"benchdata/backup-verify.md does not show {line}"


def test_no_runs_is_a_usage_error():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "pool_ratios.py")], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "Usage" in proc.stderr
