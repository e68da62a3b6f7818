"""`pgtool status --pooler-dsn` against a real PgBouncer in front of a real PostgreSQL."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from ops_helpers import status_json

from pgharness import retry, run_pgtool
from pgtool.pg.cluster import free_port
from pgtool.pg.command import run_as_prefix
from pgtool.pg.conn import connect
from pgtool.pg.privileges import give_to_server, server_user

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


@pytest.fixture
def pgbouncer(cluster, server_dir: Path) -> Iterator[str]:
    """PgBouncer (transaction pooling, one server connection per pool) in front of the session cluster."""
    assert Path(PGBOUNCER).exists(), "pgbouncer is not installed (scripts/setup.sh installs it)"
    port = free_port()
    (server_dir / "users.txt").write_text('"postgres" ""\n')
    ini = server_dir / "pgbouncer.ini"
    ini.write_text(
        "[databases]\n"
        f"* = host={cluster.socket_dir} port={cluster.port}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {server_dir}/users.txt\nadmin_users = postgres\n"
        "pool_mode = transaction\ndefault_pool_size = 1\n"
        f"logfile = {server_dir}/pgbouncer.log\npidfile = {server_dir}/pgbouncer.pid\n"
    )
    for path in server_dir.iterdir():
        give_to_server(path)
    proc = subprocess.Popen(
        [*run_as_prefix(server_user()), PGBOUNCER, str(ini)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    dsn = f"host=127.0.0.1 port={port} user=postgres dbname=pgbouncer"
    try:
        retry(lambda: connect(dsn, autocommit=True, prepare_threshold=None).close() or True, timeout=30)
        yield f"host=127.0.0.1 port={port} user=postgres"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
