"""`pgtool top` against real clusters with a known slow statement."""

from __future__ import annotations

import json

import pytest

from pgharness import run_pgtool, start_cluster


def _slow_and_fast(database):
    database.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    for _ in range(3):
        database.execute("SELECT pg_sleep(0.2)")
    for i in range(20):
        database.execute("SELECT %s::int + 1", (i,))


@pytest.mark.all_versions
def test_slow_query_comes_first_by_mean(database):
    _slow_and_fast(database)
    proc = run_pgtool(
        "top", "--dsn", database.dsn, "--database", database.name, "--by", "mean", "--format", "json"
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["order"] == "mean"
    first = doc["statements"][0]
    assert "pg_sleep" in first["query"]
    assert first["calls"] == 3
    assert first["mean_ms"] >= 150
    assert isinstance(first["queryid"], int)
    assert all(s["database"] == database.name for s in doc["statements"])
    assert not any("pgtool top" in s["query"] for s in doc["statements"])


@pytest.mark.all_versions
def test_calls_order_and_text_snapshot(database):
    _slow_and_fast(database)
    proc = run_pgtool(
        "top", "--dsn", database.dsn, "--database", database.name, "--by", "calls", "--format", "json"
    )
    first = json.loads(proc.stdout)["statements"][0]
    assert first["calls"] == 20 and "::int +" in first["query"]
    text = run_pgtool("top", "--dsn", database.dsn, "--database", database.name, "--once", "--limit", "2")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith("pgtool top  PostgreSQL")
    assert lines[2].split()[:3] == ["queryid", "calls", "mean"]
    assert "pg_sleep" in lines[3]
    assert len(lines) == 5  # header, blank, column heads, two statements
    assert "\x1b[" not in text.stdout  # not a terminal: no redraw codes


def test_extension_missing_says_what_to_run(database):
    proc = run_pgtool("top", "--dsn", database.dsn, "--once")
    assert proc.returncode == 1
    assert "pg_stat_statements is not installed" in proc.stderr
    assert "CREATE EXTENSION pg_stat_statements" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_not_preloaded_says_what_to_set():
    cluster = start_cluster(15, settings={"shared_preload_libraries": ""})
    try:
        with cluster.connect() as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
        proc = run_pgtool("top", "--dsn", cluster.dsn(), "--once")
        assert proc.returncode == 1
        assert "not preloaded" in proc.stderr
        assert "shared_preload_libraries" in proc.stderr
    finally:
        cluster.cleanup()


def test_bad_order_is_usage_error(database):
    proc = run_pgtool("top", "--dsn", database.dsn, "--by", "fastest")
    assert proc.returncode == 2
    assert "'fastest' is not one of 'mean', 'total', 'io', 'calls'" in proc.stderr
    proc = run_pgtool("top", "--dsn", database.dsn, "--format", "xml")
    assert proc.returncode == 2
    assert "'xml' is not one of 'text', 'json'" in proc.stderr


def test_refreshes_on_a_terminal_until_ctrl_c(database):
    import os
    import pty
    import select
    import signal
    import subprocess

    from pgharness import pgtool_argv

    _slow_and_fast(database)
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("PGTOOL_DSN", "DATABASE_URL")}
    # `trap '' INT` leaves SIGINT ignored, as a shell script's `cmd &` does: Ctrl-C must still end top.
    ignoring_sigint = ["bash", "-c", 'trap "" INT; exec "$@"', "-"]
    proc = subprocess.Popen(
        [
            *ignoring_sigint,
            *pgtool_argv(),
            "top",
            "--dsn",
            database.dsn,
            "--database",
            database.name,
            "--interval",
            "0.2",
        ],
        stdin=follower,
        stdout=follower,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    os.close(follower)
    seen = b""
    try:
        # Two redraws prove it refreshes; read until then (the test timeout bounds a hang).
        while seen.count(b"\x1b[H\x1b[2J") < 2:
            ready, _, _ = select.select([leader], [], [], 30)
            assert ready, seen[-500:]
            seen += os.read(leader, 65536)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130  # interrupted, like every command
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    assert b"pg_sleep" in seen
    assert b"refreshing every 0.2s" in seen
