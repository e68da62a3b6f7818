"""A database owner must never get code run with pgtool's privileges (CVE-2018-1058 pattern, issue 14).

Each test prepares a database owned by an unprivileged CREATEDB role that has done what any database
owner may do: `ALTER DATABASE ... SET search_path = public, pg_catalog`, then put look-alikes of the
functions, operators and catalogue views pgtool uses into `public`. Every look-alike calls `trap()`,
which logs the call and, when the caller is a superuser, grants the owner SUPERUSER. pgtool then runs as
the cluster's superuser against that database, as a real subprocess; afterwards the owner must still not
be a superuser, no trap may have fired in a superuser session, and the command must still have worked.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import pgharness
from pgharness import run_pgtool
from pgtool.pg.conn import connect, pinned_transaction

OWNER = "tenant_owner"

# (name, argument types, return type, arguments passed on): each becomes public.<name>(...).
TRAP_FUNCTIONS = [
    ("current_database", "", "name", ""),
    ("now", "", "timestamptz", ""),
    ("to_regclass", "text", "regclass", "$1"),
    ("set_config", "text, text, boolean", "text", "$1, $2, $3"),
    ("current_setting", "text", "text", "$1"),
    ("format", "text", "text", "$1"),
    ("quote_ident", "text", "text", "$1"),
    ("pg_try_advisory_xact_lock", "integer, integer", "boolean", "$1, $2"),
    ("pg_get_userbyid", "oid", "name", "$1"),
    ("format_type", "oid, integer", "text", "$1, $2"),
    ("pg_get_expr", "pg_node_tree, oid", "text", "$1, $2"),
    ("pg_relation_size", "regclass", "bigint", "$1"),
    ("has_database_privilege", "name, text", "boolean", "$1, $2"),
    ("pg_is_in_recovery", "", "boolean", ""),
    ("pg_current_wal_lsn", "", "pg_lsn", ""),
    ("round", "numeric, integer", "numeric", "$1, $2"),
    ("current_schemas", "boolean", "name[]", "$1"),
]
# Operators on the types every catalogue join and name lookup compares.
TRAP_OPERATORS = ["oid", "name", "text"]
# Catalogue views shadowed in public: with pg_catalog after public, an unqualified name finds these.
TRAP_RELATIONS = [
    "pg_database",
    "pg_class",
    "pg_namespace",
    "pg_extension",
    "pg_settings",
    "pg_stat_activity",
]

TRAP_SQL = f"""
CREATE TABLE public.trap_log (fn text NOT NULL, by_role text NOT NULL, by_super boolean NOT NULL);
GRANT SELECT, INSERT ON public.trap_log TO PUBLIC;
CREATE FUNCTION public.trap(fn text) RETURNS boolean LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE su boolean;
BEGIN
    SELECT r.rolsuper INTO su FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER;
    IF su THEN
        BEGIN
            INSERT INTO public.trap_log VALUES (fn, CURRENT_USER, true);
            EXECUTE 'ALTER ROLE {OWNER} SUPERUSER';
        EXCEPTION WHEN read_only_sql_transaction THEN
            RAISE EXCEPTION 'TRAP FIRED as superuser % in a read-only transaction: %', CURRENT_USER, fn;
        END;
    END IF;
    RETURN true;
END $$;
"""


def _trap_statements() -> list[str]:
    statements = []
    for name, args, returns, passed in TRAP_FUNCTIONS:
        fn = f"{name}({args})"
        statements.append(
            f"CREATE FUNCTION public.{fn} RETURNS {returns} LANGUAGE plpgsql "
            f"SET search_path = pg_catalog, pg_temp AS $$ BEGIN PERFORM public.trap('{fn}'); "
            f"RETURN pg_catalog.{name}({passed}); END $$"
        )
    for typ in TRAP_OPERATORS:
        statements += [
            f"CREATE FUNCTION public.trap_eq_{typ}({typ}, {typ}) RETURNS boolean LANGUAGE plpgsql "
            f"SET search_path = pg_catalog, pg_temp AS $$ BEGIN PERFORM public.trap('=({typ},{typ})'); "
            f"RETURN $1 OPERATOR(pg_catalog.=) $2; END $$",
            f"CREATE OPERATOR public.= (LEFTARG = {typ}, RIGHTARG = {typ}, FUNCTION = public.trap_eq_{typ})",
        ]
    for rel in TRAP_RELATIONS:
        statements.append(
            f"CREATE VIEW public.{rel} AS SELECT * FROM pg_catalog.{rel} WHERE public.trap('{rel} view')"
        )
    return statements


@pytest.fixture(scope="module")
def hostile_cluster() -> Iterator[Any]:
    """A cluster of its own (roles are cluster-wide), pg_stat_statements preloaded, with OWNER."""
    cluster = pgharness.start_cluster(
        15, settings={"shared_preload_libraries": "pg_stat_statements,auto_explain"}
    )
    try:
        with cluster.connect() as conn:
            conn.execute(f"CREATE ROLE {OWNER} LOGIN CREATEDB NOSUPERUSER")
        yield cluster
    finally:
        cluster.cleanup()


@pytest.fixture
def hostile_db(hostile_cluster: Any) -> Iterator[pgharness.Database]:
    """A database OWNER owns and has booby-trapped; `db.dsn` connects as the superuser."""
    name = f"hostile_{uuid.uuid4().hex[:8]}"
    cluster = hostile_cluster
    with cluster.connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}" OWNER {OWNER}')
    db = pgharness.Database(cluster, name)
    # What the owner builds for pgtool to maintain: a partitioned table, a materialized view with a unique
    # index (the `report sales` view, too), pg_stat_statements installed by an administrator in a schema
    # of its own, so `top` has to find it.
    with connect(cluster.dsn(name), pin="off") as conn:
        conn.execute("CREATE SCHEMA stats")
        conn.execute("CREATE EXTENSION pg_stat_statements SCHEMA stats")
    with connect(cluster.dsn(name, user=OWNER), pin="off") as conn:
        conn.execute("CREATE TABLE public.events (at timestamptz NOT NULL, v int) PARTITION BY RANGE (at)")
        conn.execute(
            "CREATE MATERIALIZED VIEW public.mv_daily_revenue AS "
            "SELECT d::date AS day, 1 AS orders, 10.00::numeric AS revenue "
            "FROM generate_series('2026-01-01'::date, '2026-01-10'::date, interval '1 day') d"
        )
        conn.execute("CREATE UNIQUE INDEX ON public.mv_daily_revenue (day)")
        conn.execute(TRAP_SQL)
        for statement in _trap_statements():
            conn.execute(statement)
        conn.execute(f'ALTER DATABASE "{name}" SET search_path = public, pg_catalog')
    _assert_traps_armed(cluster, name)
    yield db
    with cluster.connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f"ALTER ROLE {OWNER} NOSUPERUSER")


def _assert_traps_armed(cluster: Any, name: str) -> None:
    """An unpinned superuser session does fire the traps (so a clean run below proves something)."""
    with connect(cluster.dsn(name), pin="off") as conn:
        conn.execute("SELECT current_database()")
    with connect(cluster.dsn(name)) as conn:
        assert conn.execute("SELECT fn FROM public.trap_log").fetchall() == [("current_database()",)]
        conn.execute("TRUNCATE public.trap_log")
        conn.execute(f"ALTER ROLE {OWNER} NOSUPERUSER")


def assert_no_trap_fired(db: pgharness.Database) -> None:
    with connect(db.dsn) as conn:  # pinned: pgtool's own connect
        fired = conn.execute("SELECT fn FROM public.trap_log WHERE by_super").fetchall()
        owner_is_super = conn.execute(
            "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = %s", (OWNER,)
        ).fetchone()[0]
    assert fired == [], f"traps fired as superuser: {sorted({r[0] for r in fired})}"
    assert owner_is_super is False


def test_bootstrap_extensions(hostile_db):
    result = run_pgtool("bootstrap-extensions", "--dsn", hostile_db.dsn, "--database", hostile_db.name)
    assert result.returncode == 0, result.stderr
    assert_no_trap_fired(hostile_db)
    with connect(hostile_db.dsn) as conn:
        row = conn.execute(
            "SELECT p.prosecdef, p.proconfig FROM pg_catalog.pg_proc p "
            "WHERE p.oid = 'pgbouncer.get_auth(text)'::pg_catalog.regprocedure"
        ).fetchone()
    assert row == (True, ["search_path=pg_catalog, pg_temp"])


def test_bootstrap_refuses_a_lookup_function_the_owner_planted(hostile_db):
    with connect(hostile_db.cluster.dsn(hostile_db.name, user=OWNER), pin="off") as conn:
        conn.execute("CREATE SCHEMA pgbouncer")
    result = run_pgtool("bootstrap-extensions", "--dsn", hostile_db.dsn, "--database", hostile_db.name)
    assert result.returncode == 1, result.stderr
    assert f"schema pgbouncer in database {hostile_db.name} is owned by {OWNER}" in result.stderr
    assert_no_trap_fired(hostile_db)


def test_partitions(hostile_db):
    result = run_pgtool("partitions", "--dsn", hostile_db.dsn, "--table", "public.events", "--ahead", "1")
    assert result.returncode == 0, result.stderr
    assert "2 created" in result.stdout
    assert_no_trap_fired(hostile_db)


def test_partitions_refuses_to_move_rows_through_the_owners_trigger(hostile_db):
    owner_dsn = hostile_db.cluster.dsn(hostile_db.name, user=OWNER)
    with connect(owner_dsn, pin="off") as conn:
        conn.execute("CREATE TABLE public.events_default PARTITION OF public.events DEFAULT")
        conn.execute("INSERT INTO public.events VALUES (pg_catalog.now(), 1)")
        conn.execute(
            "CREATE FUNCTION public.on_delete() RETURNS trigger LANGUAGE plpgsql "
            "SET search_path = pg_catalog AS $$ BEGIN PERFORM public.trap('trigger'); RETURN OLD; END $$"
        )
        conn.execute(
            "CREATE TRIGGER on_delete AFTER DELETE ON public.events "
            "FOR EACH ROW EXECUTE FUNCTION public.on_delete()"
        )
    # Moving the row out of DEFAULT deletes it there: the trigger would run as the superuser.
    result = run_pgtool("partitions", "--dsn", hostile_db.dsn, "--table", "public.events", "--ahead", "0")
    assert result.returncode == 1, result.stderr
    assert f"would move through code its owner {OWNER} controls (trigger on_delete" in result.stderr
    assert_no_trap_fired(hostile_db)
    # As the owner it runs (the trigger with the owner's own rights).
    result = run_pgtool("partitions", "--dsn", owner_dsn, "--table", "public.events", "--ahead", "0")
    assert result.returncode == 0, result.stderr
    assert "(moved 1 rows from the DEFAULT partition)" in result.stdout
    assert_no_trap_fired(hostile_db)


def test_refresh_mv_all_and_by_bare_name(hostile_db):
    result = run_pgtool("refresh-mv", "--dsn", hostile_db.dsn, "--all")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("refreshed ")
    # A bare name is looked up in the session's search_path schemas (public here), by catalogue reads.
    result = run_pgtool("refresh-mv", "--dsn", hostile_db.dsn, "mv_daily_revenue")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("refreshed ")
    assert_no_trap_fired(hostile_db)


def test_report(hostile_db):
    result = run_pgtool("report", "sales", "--dsn", hostile_db.dsn, "--days", "3", "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["day"] for r in rows] == ["2026-01-08", "2026-01-09", "2026-01-10"]
    assert_no_trap_fired(hostile_db)


def test_status(hostile_db):
    result = run_pgtool("status", "--dsn", hostile_db.dsn, "--format", "json")
    assert result.returncode in (0, 1), result.stderr
    assert json.loads(result.stdout)["sections"]["server"]["state"] == "ok"
    assert_no_trap_fired(hostile_db)


def test_top(hostile_db):
    result = run_pgtool("top", "--dsn", hostile_db.dsn, "--once", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert "statements" in json.loads(result.stdout)
    assert_no_trap_fired(hostile_db)


def test_bench(hostile_db):
    result = run_pgtool(
        "bench",
        "--dsn",
        hostile_db.dsn,
        "--scenario",
        "product_search",
        "--iterations",
        "3",
        "--warmup",
        "1",
        "--scale",
        "0.01",
        "--format",
        "json",
    )
    assert result.returncode == 0, result.stderr
    assert_no_trap_fired(hostile_db)


def test_connect_pins_before_returning_and_a_rollback_keeps_the_pin(hostile_db):
    with connect(hostile_db.dsn, autocommit=False) as conn:
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE  # the pin is committed
        conn.execute("SELECT 1")
        conn.rollback()
        assert conn.execute("SHOW search_path").fetchone()[0] == ""
    with connect(hostile_db.dsn, pin="transaction") as conn:
        assert conn.execute("SHOW search_path").fetchone()[0] == "public, pg_catalog"
        with pinned_transaction(conn):
            assert conn.execute("SHOW search_path").fetchone()[0] == ""
        assert conn.execute("SHOW search_path").fetchone()[0] == "public, pg_catalog"
    with pytest.raises(ValueError, match="pin must be"):
        connect(hostile_db.dsn, pin="sometimes")  # type: ignore[arg-type]
    assert_no_trap_fired(hostile_db)
