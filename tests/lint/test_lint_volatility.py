"""The committed volatility catalogue is what scripts/gen_volatility.py reads from real PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pgtool.lint.volatility import DATA_DIR, VOLATILE, catalogue, catalogue_major

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gen_volatility.py"


@pytest.mark.all_versions
def test_committed_catalogue_matches_pg_proc(cluster, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), cluster.dsn("postgres"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    major = cluster.binaries.major
    generated = json.loads((tmp_path / f"volatility_pg{major}.json").read_text())
    committed = json.loads((DATA_DIR / f"volatility_pg{major}.json").read_text())
    assert generated["major"] == committed["major"] == major
    # Minor releases add internal functions (15.x added binary_upgrade_set_next_attribute_versions, which
    # the committed catalogue has and Debian's 15.18 lacks): every function this server has must be in
    # the catalogue with the same volatility, and the catalogue may know a few more.
    for kind in ("volatile", "stable", "immutable"):
        assert set(generated[kind]) <= set(committed[kind]), (
            kind,
            set(generated[kind]) - set(committed[kind]),
        )
        extra = set(committed[kind]) - set(generated[kind])
        assert len(extra) <= 5, extra


def test_catalogue_facts() -> None:
    for major in (15, 18):
        names = catalogue(major)
        assert names["now"] == "stable"
        assert names["statement_timestamp"] == "stable"
        assert names["lower"] == "immutable"
        for name in ("random", "gen_random_uuid", "clock_timestamp", "nextval", "timeofday"):
            assert names[name] == VOLATILE, (major, name)
    assert catalogue(18)["uuidv7"] == VOLATILE
    assert "uuidv7" not in catalogue(15)
    assert [catalogue_major(m) for m in (10, 15, 16, 17, 18)] == [15, 15, 15, 15, 18]
