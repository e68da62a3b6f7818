"""`pgtool bench` as a user runs it: JSON shape, output files, clean-up, usage errors."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from pgharness import create_database, drop_database, run_pgtool

SMALL = ("--iterations", "3", "--warmup", "1", "--scale", "0.05")
SCENARIO_KEYS = {
    "name",
    "baseline_p50_ms",
    "optimized_p50_ms",
    "baseline_p95_ms",
    "optimized_p95_ms",
    "speedup",
    "iterations",
}


def _bench_schemas(cluster, dbname: str) -> list[str]:
    with cluster.connect(dbname) as conn:
        rows = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'pgtool_bench_%'").fetchall()
    return [r[0] for r in rows]


@pytest.fixture
def empty_db(cluster):
    db = create_database(cluster, prefix="benchcli")
    yield db
    drop_database(db)


def test_json_shape_output_files_and_no_leftover_schema(cluster, empty_db, tmp_path):
    out = tmp_path / "out"
    proc = run_pgtool(
        "bench",
        "--dsn",
        cluster.dsn(empty_db.name, tcp=True),
        *SMALL,
        "--scenario",
        "order_create_5",
        "--scenario",
        "product_search",
        "--format",
        "json",
        "--output-dir",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert set(doc) == {"rtt_ms", "server_version", "scenarios"}
    assert doc["rtt_ms"] > 0
    assert doc["server_version"].startswith(str(cluster.binaries.major))
    assert [s["name"] for s in doc["scenarios"]] == ["order_create_5", "product_search"]
    for entry in doc["scenarios"]:
        assert set(entry) == SCENARIO_KEYS
        assert entry["iterations"] == 3
        assert entry["baseline_p50_ms"] > 0 and entry["optimized_p50_ms"] > 0
        assert entry["speedup"] == pytest.approx(
            entry["baseline_p50_ms"] / entry["optimized_p50_ms"], rel=0.01
        )

    baseline = (out / "baseline-results.txt").read_text().splitlines()
    optimized = (out / "optimized-results.txt").read_text().splitlines()
    assert [line.split()[0] for line in baseline if line.startswith(("order_", "product_"))] == [
        "order_create_5",
        "product_search",
    ]
    assert any(line.startswith("order_create_5") and "per_item_insert" in line for line in baseline)
    assert any(line.startswith("product_search") and "count_over" in line for line in optimized)
    detailed = json.loads((out / "results.json").read_text())
    assert detailed["scenarios"][0]["name"] == "order_create_5"
    assert {k: detailed[k] for k in ("rtt_ms", "server_version")} == {
        k: doc[k] for k in ("rtt_ms", "server_version")
    }
    assert detailed["machine"]["nproc"] == os.cpu_count()
    assert "per_item_insert" in detailed["scenarios"][0]["variants"]

    assert _bench_schemas(cluster, empty_db.name) == []


def test_text_output_quiet_stderr_and_pushed_speedups(cluster, empty_db, pushgateway):
    proc = run_pgtool(
        "bench",
        "--dsn",
        cluster.dsn(empty_db.name, tcp=True),
        *SMALL,
        "--scenario",
        "cart_update",
        "--pushgateway",
        pushgateway.url,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "cart_update" in proc.stdout and "speedup" in proc.stdout
    assert "atomic_cte lost 0" in proc.stdout
    # Not a terminal: no progress bar, only JSON log lines on stderr.
    assert "\r" not in proc.stderr and "---]" not in proc.stderr
    assert all(line.startswith("{") for line in proc.stderr.splitlines() if line.strip())
    assert _bench_schemas(cluster, empty_db.name) == []
    speedups = pushgateway.samples("pgtool_bench_speedup", job="pgtool-bench", scenario="cart_update")
    assert len(speedups) == 1 and speedups[0] > 0
    assert pushgateway.samples("pgtool_last_run_success", job="pgtool-bench") == [1.0]


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_without_dsn_a_throwaway_cluster_is_started_and_removed():
    proc = run_pgtool("bench", *SMALL, "--scenario", "category_filter", "--format", "json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["scenarios"][0]["name"] == "category_filter"
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    started = next(e for e in events if e["event"] == "starting a throwaway cluster")
    removed = next(e for e in events if e["event"] == "throwaway cluster removed")
    assert removed["directory"] == started["directory"]
    assert not Path(started["directory"]).exists()
    assert not _port_open(started["port"])
    # No process (a postmaster or its children) still runs with that directory on its command line.
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        assert started["directory"] not in cmdline


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--iterations", "0"), "--iterations"),
        (("--scenario", "nope"), "unknown scenario nope"),
        (("--format", "xml"), "--format"),
        (("--clients", "0"), "--clients"),
    ],
)
def test_bad_options_are_one_line_usage_errors(args, message):
    proc = run_pgtool("bench", "--dsn", "host=127.0.0.1 port=1 dbname=x", *args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_unreachable_server_exits_3_without_leaking_the_password():
    proc = run_pgtool("bench", "--dsn", "postgresql://bench:s3cret@127.0.0.1:1/x", *SMALL)
    assert proc.returncode == 3
    assert "s3cret" not in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.mark.pg_version(18)
def test_json_on_postgresql_18(cluster, empty_db):
    proc = run_pgtool(
        "bench",
        "--dsn",
        cluster.dsn(empty_db.name, tcp=True),
        *SMALL,
        "--scenario",
        "prepared_cache",
        "--format",
        "json",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["server_version"].startswith("18")
    assert doc["scenarios"][0]["name"] == "prepared_cache"
    assert _bench_schemas(cluster, empty_db.name) == []


def test_via_pgbouncer_measures_through_a_real_pooler_and_stops_it():
    proc = run_pgtool(
        "bench",
        "--via-pgbouncer",
        *SMALL,
        "--scenario",
        "order_create_5",
        "--scenario",
        "prepared_cache",
        "--format",
        "json",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    # prepared statements cannot cross a transaction-mode PgBouncer 1.18: that scenario is skipped.
    assert [s["name"] for s in doc["scenarios"]] == ["order_create_5"]
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    started = next(e for e in events if e["event"] == "pgbouncer started")
    assert any(e["event"] == "scenario skipped" and e["scenario"] == "prepared_cache" for e in events)
    assert any(e["event"] == "pgbouncer stopped" for e in events)
    assert not _port_open(started["port"])
    assert not Path(started["directory"]).exists()


def test_via_pgbouncer_with_a_dsn_is_a_usage_error():
    proc = run_pgtool("bench", "--via-pgbouncer", "--dsn", "host=127.0.0.1 port=1 dbname=x")
    assert proc.returncode == 2
    assert "--via-pgbouncer" in proc.stderr and "Traceback" not in proc.stderr
