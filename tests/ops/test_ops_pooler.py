"""`pgtool status --pooler-dsn` against a real PgBouncer in front of a real PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from ops_helpers import status_json

from pgharness import retry, run_pgtool
from pgtool.bench.pooler import pgbouncer as start_pgbouncer
from pgtool.pg.cluster import free_port
from pgtool.pg.conn import connect


@pytest.fixture
def pgbouncer(cluster) -> Iterator[str]:
    """PgBouncer (transaction pooling, one server connection per pool) in front of the session cluster,
    started the way `pgtool bench --via-pgbouncer` starts it, with postgres allowed on the admin console."""
    with start_pgbouncer(cluster.port, "postgres", pool_size=1, admin_users="postgres") as port:
        yield f"host=127.0.0.1 port={port} user=postgres"


def test_pools_are_shown_and_waiting_clients_need_attention(cluster, pgbouncer):
    app_dsn = f"{pgbouncer} dbname=postgres"
    holder = connect(app_dsn, autocommit=False, prepare_threshold=None)
    holder.execute("SELECT 1")  # holds the pool's only server connection in an open transaction
    waiter_done = threading.Event()

    def waiter() -> None:
        with connect(app_dsn, autocommit=True, prepare_threshold=None) as conn:
            conn.execute("SELECT 2")
        waiter_done.set()

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    try:

        def waiting_seen() -> dict:
            proc = run_pgtool(
                "status",
                "--dsn",
                cluster.dsn(),
                "--pooler-dsn",
                pgbouncer,
                "--format",
                "json",
                "--k8s",
                "off",
                "--max-pool-wait",
                "0s",
            )
            doc = status_json(proc)
            pools = doc["sections"]["pooler"]["pools"]
            pool = next(p for p in pools if p["database"] == "postgres")
            return doc if pool["cl_waiting"] >= 1 else {}

        doc = retry(waiting_seen, timeout=60, interval=0.5)
        problem = next(p for p in doc["problems"] if p["area"] == "pooler")
        assert "waiting" in problem["message"] and "default_pool_size" in problem["fix"]
    finally:
        holder.rollback()
        holder.close()
        thread.join(timeout=30)
    assert waiter_done.is_set()


def test_unreachable_pooler_is_a_problem_not_a_crash(cluster):
    port = free_port()
    proc = run_pgtool(
        "status",
        "--dsn",
        cluster.dsn(),
        "--pooler-dsn",
        f"host=127.0.0.1 port={port} user=x",
        "--format",
        "json",
        "--k8s",
        "off",
    )
    doc = status_json(proc)
    assert proc.returncode == 1
    assert any(p["area"] == "pooler" and "cannot connect" in p["message"] for p in doc["problems"])
