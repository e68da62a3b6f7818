"""PgBouncer started for real from the manifests' rendered config: transaction pooling, auth_query through
the bootstrapped lookup (no userlist of application users), the %include of the overlay's databases."""

from __future__ import annotations

import threading

import psycopg
import pytest
from deploy_support import APP_PASSWORD, PGBOUNCER_AUTH_PASSWORD, scrape

from pgharness import retry


def connect(setup, dbname: str = "shop", user: str = "shop_api", password: str = APP_PASSWORD):
    return psycopg.connect(setup.conninfo(dbname, user, password), autocommit=True, prepare_threshold=None)


def test_application_user_logs_in_through_auth_query(pgbouncer_setup) -> None:
    with connect(pgbouncer_setup) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == ("shop_api", "shop")
    # The auth file knows pgbouncer_auth only: shop_api was found through auth_query.
    userlist = pgbouncer_setup.config.split("auth_file = ")[1].split("\n")[0]
    with open(userlist) as f:
        assert [line.split()[0] for line in f] == ['"pgbouncer_auth"']


def test_wrong_password_is_refused(pgbouncer_setup) -> None:
    with pytest.raises(psycopg.OperationalError, match=r"password authentication failed|SASL"):
        connect(pgbouncer_setup, password="wrong")


def test_overlay_database_route_is_included(pgbouncer_setup) -> None:
    """overlays/prod's databases.ini (the shared pooler's shop_qa pool) is read through %include."""
    with connect(pgbouncer_setup, dbname="shop_qa") as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("shop",)


def test_running_config_is_the_manifests(pgbouncer_setup) -> None:
    with psycopg.connect(
        pgbouncer_setup.conninfo("pgbouncer", "pgbouncer_auth", PGBOUNCER_AUTH_PASSWORD),
        autocommit=True,
        prepare_threshold=None,
    ) as admin:
        cur = admin.cursor()
        cur.execute("SHOW CONFIG")
        names = [d.name for d in cur.description]
        config = {row[names.index("key")]: row[names.index("value")] for row in cur.fetchall()}
    assert config["pool_mode"] == "transaction"
    assert config["max_client_conn"] == "1000"
    assert config["default_pool_size"] == "20"
    assert config["server_reset_query"] == "DISCARD ALL"
    assert config["auth_user"] == "pgbouncer_auth"
    assert "pgbouncer.get_auth" in config["auth_query"]


def test_transaction_pooling_shares_server_connections(pgbouncer_setup) -> None:
    """Two clients in turn get the same server backend: pooling per transaction, not per session."""
    with connect(pgbouncer_setup) as first, connect(pgbouncer_setup) as second:
        pids = {first.execute("SELECT pg_backend_pid()").fetchone()[0]}
        pids.add(second.execute("SELECT pg_backend_pid()").fetchone()[0])
    assert len(pids) == 1


def test_exporter_reports_pools_and_waiting_clients(pgbouncer_setup) -> None:
    """default_pool_size is 20: hold all 20 server connections in open transactions and watch the 21st
    client wait in pgbouncer_pools_client_waiting_connections (what PgbouncerClientsWaiting reads)."""
    holders = [connect(pgbouncer_setup) for _ in range(20)]
    waiter_result: list[object] = []
    try:
        for conn in holders:
            conn.execute("BEGIN")
            conn.execute("SELECT 1")
        waiter = threading.Thread(
            target=lambda: waiter_result.append(connect(pgbouncer_setup).execute("SELECT 42").fetchone()),
            daemon=True,
        )
        waiter.start()

        def waiting() -> dict:
            samples = scrape(pgbouncer_setup.exporter_url)
            found = {
                (lab["database"], lab["user"]): v
                for lab, v in samples["pgbouncer_pools_client_waiting_connections"]
            }
            return samples if found.get(("shop", "shop_api"), 0) >= 1 else {}

        samples = retry(waiting, timeout=30)
        assert [v for _, v in samples["pgbouncer_up"]] == [1.0]
        active = {
            (lab["database"], lab["user"]): v
            for lab, v in samples["pgbouncer_pools_client_active_connections"]
        }
        assert active[("shop", "shop_api")] == 20
    finally:
        for conn in holders:
            conn.close()
    waiter.join(timeout=30)
    assert waiter_result == [(42,)]  # it got a connection once the others let go
