"""bootstrap-extensions on a dedicated cluster (roles are cluster-wide), with a real PgBouncer in front."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest
from pgbouncer_harness import PgBouncer

from pgharness import run_pgtool
from pgtool.pg.command import libpq_args
from pgtool.schema.locks import REFRESH_MV_LOCK_CLASS

PASSWORDS = {
    "PGTOOL_GRAFANA_READER_PASSWORD": "graf-secret-1",
    "PGTOOL_REPLICATOR_PASSWORD": "repl-secret-2",
}
BOUNCER_PASSWORD = "bouncer-secret-3"


def state(cluster) -> list:
    """Everything bootstrap manages, to compare before and after a second run."""
    rows = []
    with cluster.connect() as conn:
        rows += conn.execute(
            "SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, "
            "rolbypassrls, rolpassword, (SELECT setconfig FROM pg_db_role_setting WHERE setrole = a.oid) "
            "FROM pg_authid a WHERE rolname IN ('grafana_reader', 'replicator', 'pgbouncer_auth') ORDER BY 1"
        ).fetchall()
        dbs = [
            r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1")
        ]
    for db in dbs:
        with cluster.connect(db) as conn:
            rows += conn.execute(
                "SELECT p.oid, p.xmin::text, p.proacl::text, n.nspacl::text FROM pg_proc p "
                "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'pgbouncer'"
            ).fetchall()
            rows += conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_statements'"
            ).fetchall()
    return rows


def test_role_without_password_is_created_nologin(bootstrap_cluster):
    # Runs first on each dedicated cluster (file order), before the `bootstrapped` fixture sets passwords.
    result = run_pgtool("bootstrap-extensions", "--dsn", bootstrap_cluster.dsn(), "--database", "postgres")
    assert result.returncode == 0, result.stderr
    assert "role replicator created NOLOGIN" in result.stdout
    assert "warning" in result.stdout


@pytest.fixture(scope="module")
def bootstrapped(bootstrap_cluster, tmp_path_factory):
    """Bootstrap once per module: grafana_reader and replicator from the environment, pgbouncer_auth from
    a file. Returns (cluster, first run, second run)."""
    with bootstrap_cluster.connect() as conn:
        conn.execute("CREATE DATABASE appdb")
    pw_file = tmp_path_factory.mktemp("pw") / "pgbouncer_auth"
    pw_file.write_text(BOUNCER_PASSWORD + "\n")
    args = (
        "bootstrap-extensions",
        "--dsn",
        bootstrap_cluster.dsn(),
        "--password-file",
        f"pgbouncer_auth={pw_file}",
    )
    first = run_pgtool(*args, env=PASSWORDS)
    before = state(bootstrap_cluster)
    second = run_pgtool(*args, env=PASSWORDS)
    after = state(bootstrap_cluster)
    return bootstrap_cluster, first, second, before, after


def test_bootstrap_twice_changes_nothing_the_second_time(bootstrapped):
    _cluster, first, second, before, after = bootstrapped
    assert first.returncode == 0, first.stderr
    # the roles exist NOLOGIN from the test before: now they get LOGIN and their passwords
    assert "changed   [cluster] role grafana_reader altered: LOGIN" in first.stdout
    assert "changed   [cluster] role grafana_reader password set" in first.stdout
    assert "changed   [appdb] extension pg_stat_statements created" in first.stdout
    assert second.returncode == 0, second.stderr
    assert "changed" not in second.stdout.replace(" changed,", ""), second.stdout
    assert "0 changed" in second.stdout
    assert before == after
    for run in (first, second):
        for secret in (*PASSWORDS.values(), BOUNCER_PASSWORD):
            assert secret not in run.stdout + run.stderr


def test_plaintext_passwords_never_reach_the_server_log(bootstrapped):
    cluster = bootstrapped[0]
    log = cluster.log_file.read_text(errors="replace")
    assert "ALTER ROLE" in log or "CREATE ROLE" in log  # log_statement=all is on: statements are there
    for secret in (*PASSWORDS.values(), BOUNCER_PASSWORD):
        assert secret not in log


def test_grafana_reader_reads_statistics_but_cannot_write(bootstrapped):
    cluster = bootstrapped[0]
    with cluster.connect("appdb") as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS precious (id int)")
        conn.execute("SELECT id AS marker_for_grafana FROM precious")
    dsn = (
        cluster.dsn("appdb", user="grafana_reader", tcp=True)
        + " password="
        + PASSWORDS["PGTOOL_GRAFANA_READER_PASSWORD"]
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        texts = [r[0] for r in conn.execute("SELECT query FROM pg_stat_statements")]
        # pg_monitor (pg_read_all_stats) shows other users' query texts, not "<insufficient privilege>"
        assert any("marker_for_grafana" in t for t in texts)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO precious VALUES (1)")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("CREATE TABLE mine (id int)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM precious")
        # read-only is a default it could switch off; the missing privileges still hold
        conn.execute("SET default_transaction_read_only = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO precious VALUES (1)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE public.mine (id int)")


def test_replicator_can_take_a_base_backup_and_nothing_else(bootstrapped):
    cluster = bootstrapped[0]
    password = PASSWORDS["PGTOOL_REPLICATOR_PASSWORD"]
    dsn = cluster.dsn(user="replicator", tcp=True) + f" password={password}"
    target = Path(tempfile.mkdtemp(prefix="pgtool-s6-bb-"))
    try:
        with libpq_args(dsn) as (conninfo, env):
            proc = subprocess.run(
                [
                    cluster.binaries.path("pg_basebackup"),
                    "-d",
                    conninfo,
                    "-D",
                    str(target / "b"),
                    "-X",
                    "stream",
                    "-c",
                    "fast",
                ],
                capture_output=True,
                text=True,
                env={**__import__("os").environ, **env},
                timeout=300,
            )
        assert proc.returncode == 0, proc.stderr
        assert (target / "b" / "PG_VERSION").exists()
    finally:
        import shutil

        shutil.rmtree(target, ignore_errors=True)
    replicator_dsn = cluster.dsn("appdb", user="replicator", tcp=True) + f" password={password}"
    with psycopg.connect(replicator_dsn) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT * FROM precious")
    with cluster.connect() as conn:
        member_of = conn.execute(
            "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member "
            "WHERE r.rolname = 'replicator'"
        ).fetchone()[0]
        attrs = conn.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolbypassrls, rolreplication, rolcanlogin "
            "FROM pg_roles WHERE rolname = 'replicator'"
        ).fetchone()
    assert member_of == 0
    assert attrs == (False, False, False, False, True, True)


def test_get_auth_is_locked_down(bootstrapped):
    cluster = bootstrapped[0]
    with cluster.connect("appdb") as conn:
        conn.execute("DROP ROLE IF EXISTS nosy")
        conn.execute("CREATE ROLE nosy LOGIN")
        config, secdef = conn.execute(
            "SELECT proconfig, prosecdef FROM pg_proc WHERE oid = 'pgbouncer.get_auth(text)'::regprocedure"
        ).fetchone()
        assert secdef and config == ["search_path=pg_catalog, pg_temp"]
        conn.execute("SET ROLE nosy")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM pgbouncer.get_auth('grafana_reader')")
        conn.execute("RESET ROLE")
        conn.execute("SET ROLE pgbouncer_auth")
        rows = conn.execute("SELECT username, password FROM pgbouncer.get_auth('grafana_reader')").fetchall()
        assert rows and rows[0][1].startswith("SCRAM-SHA-256$")
        assert conn.execute("SELECT * FROM pgbouncer.get_auth('postgres')").fetchall() == []  # superuser
        conn.execute("RESET ROLE")
        conn.execute("DROP ROLE nosy")


def test_client_authenticates_through_pgbouncer_with_auth_query(bootstrapped):
    cluster = bootstrapped[0]
    with cluster.connect() as conn:
        conn.execute("DROP ROLE IF EXISTS app_user")
        conn.execute("CREATE ROLE app_user LOGIN PASSWORD 'app-pass-4'")
    bouncer = PgBouncer(
        "127.0.0.1",
        cluster.port,
        pool_mode="transaction",
        auth_type="scram-sha-256",
        auth_users={"pgbouncer_auth": BOUNCER_PASSWORD},
        auth_user="pgbouncer_auth",
        auth_query="SELECT * FROM pgbouncer.get_auth($1)",
    )
    with bouncer:
        good = bouncer.dsn("appdb", user="app_user", password="app-pass-4")
        with psycopg.connect(good, autocommit=True, prepare_threshold=None) as conn:
            assert conn.execute("SELECT current_user, current_database()").fetchone() == ("app_user", "appdb")
        with pytest.raises(psycopg.OperationalError, match=r"password authentication failed|SASL"):
            psycopg.connect(bouncer.dsn("appdb", user="app_user", password="wrong"), connect_timeout=10)
        # the lookup never serves superusers
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(bouncer.dsn("appdb", user="postgres", password="x"), connect_timeout=10)

        # refresh-mv works through transaction pooling (SET LOCAL, transaction-level advisory lock)
        with cluster.connect("appdb") as conn:
            conn.execute("DROP MATERIALIZED VIEW IF EXISTS mv_app")
            conn.execute("GRANT CREATE ON SCHEMA public TO app_user")
            conn.execute("SET ROLE app_user")
            conn.execute("CREATE MATERIALIZED VIEW mv_app AS SELECT g AS id FROM generate_series(1, 3) g")
            conn.execute("CREATE UNIQUE INDEX ON mv_app (id)")
        via_bouncer = bouncer.dsn("appdb", user="app_user")
        env = {"PGPASSWORD": "app-pass-4"}
        result = run_pgtool("refresh-mv", "--dsn", via_bouncer, "mv_app", env=env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("refreshed ")
        holder = cluster.connect("appdb", autocommit=False)
        try:
            holder.execute(
                "SELECT pg_advisory_xact_lock(%s, ('mv_app'::regclass::oid::bigint - 2147483648)::int4)",
                (REFRESH_MV_LOCK_CLASS,),
            )
            skipped = run_pgtool("refresh-mv", "--dsn", via_bouncer, "mv_app", env=env)
        finally:
            holder.rollback()
            holder.close()
        assert skipped.returncode == 0, skipped.stderr
        assert skipped.stdout.startswith("skipped ")


def test_bad_password_file_is_a_usage_error(bootstrap_cluster, tmp_path):
    result = run_pgtool(
        "bootstrap-extensions", "--dsn", bootstrap_cluster.dsn(), "--password-file", "nobody=/x"
    )
    assert result.returncode == 2
    assert "unknown role 'nobody'" in result.stderr
    empty = tmp_path / "empty"
    empty.write_text("")
    result = run_pgtool(
        "bootstrap-extensions", "--dsn", bootstrap_cluster.dsn(), "--password-file", f"replicator={empty}"
    )
    assert result.returncode == 2 and "is empty" in result.stderr
    assert "Traceback" not in result.stderr
