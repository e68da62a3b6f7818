"""pgtool refresh-mv: concurrent refresh under readers, overlapping runs, unpopulated views, missing index."""

from __future__ import annotations

from decimal import Decimal

import pytest
from schema_testlib import scalar

from pgharness import run_pgtool
from pgtool import sample
from pgtool.schema.locks import REFRESH_MV_LOCK_CLASS


def add_sale(db, total: str = "100.00") -> None:
    db.execute(
        "INSERT INTO orders (user_id, status, total, created_at) "
        "VALUES (1, 'paid', %s, '2026-03-15 10:00+00')",
        (total,),
    )


@pytest.mark.all_versions
def test_refresh_runs_concurrently_while_a_reader_holds_the_view(sample_db):
    before = scalar(sample_db, "SELECT sum(revenue) FROM mv_daily_revenue")
    add_sale(sample_db, "123.45")
    reader = sample_db.connect(autocommit=False)
    try:
        # An open read transaction holds ACCESS SHARE on the view: a plain REFRESH (ACCESS EXCLUSIVE) would
        # wait and hit the lock timeout; CONCURRENTLY (EXCLUSIVE) does not conflict with it.
        assert reader.execute("SELECT count(*) FROM mv_daily_revenue").fetchone()[0] > 0
        result = run_pgtool("refresh-mv", "--dsn", sample_db.dsn, "mv_daily_revenue", "--lock-timeout", "2s")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("refreshed ")
    finally:
        reader.close()
    assert scalar(sample_db, "SELECT sum(revenue) FROM mv_daily_revenue") == before + Decimal("123.45")


@pytest.mark.all_versions
def test_reads_are_not_blocked_during_a_concurrent_refresh(sample_db):
    refresher = sample_db.connect(autocommit=False)
    try:
        refresher.execute("REFRESH MATERIALIZED VIEW CONCURRENTLY mv_customer_summary")  # not committed yet
        with sample_db.connect() as conn:
            conn.execute("SET lock_timeout = '1s'")
            assert conn.execute("SELECT count(*) FROM mv_customer_summary").fetchone()[0] > 0
    finally:
        refresher.rollback()
        refresher.close()


def test_overlapping_run_skips_the_view_at_once(sample_db, pushgateway):
    # Another run is mid-refresh of mv_daily_revenue: it holds the view's advisory lock and its refresh lock.
    other = sample_db.connect(autocommit=False)
    try:
        oid = other.execute("SELECT 'mv_daily_revenue'::regclass::oid").fetchone()[0]
        taken = other.execute(
            "SELECT pg_try_advisory_xact_lock(%s, (%s::oid::bigint - 2147483648)::int4)",
            (REFRESH_MV_LOCK_CLASS, oid),
        ).fetchone()[0]
        assert taken
        other.execute("REFRESH MATERIALIZED VIEW CONCURRENTLY mv_daily_revenue")
        # A long lock timeout: had the second run queued behind the first, it would still be waiting.
        result = run_pgtool(
            "refresh-mv",
            "--dsn",
            sample_db.dsn,
            "--all",
            "--lock-timeout",
            "10min",
            "--pushgateway",
            pushgateway.url,
            timeout=120,
        )
    finally:
        other.rollback()
        other.close()
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines())
    assert lines["skipped"].startswith("public.mv_daily_revenue")
    assert '"event": "view skipped"' in result.stderr
    assert result.stdout.count("refreshed ") == 2
    assert pushgateway.samples(
        "pgtool_refresh_mv_last_success_timestamp_seconds", view="public.mv_customer_summary"
    )
    assert not pushgateway.samples("pgtool_refresh_mv_duration_seconds", view="public.mv_daily_revenue")
    # a later run that refreshes only one view keeps the other views' series (one push group per view)
    again = run_pgtool(
        "refresh-mv", "--dsn", sample_db.dsn, "mv_daily_revenue", "--pushgateway", pushgateway.url
    )
    assert again.returncode == 0, again.stderr
    assert pushgateway.samples("pgtool_refresh_mv_duration_seconds", view="public.mv_daily_revenue")
    assert pushgateway.samples("pgtool_refresh_mv_duration_seconds", view="public.mv_customer_summary")
    assert pushgateway.samples("pgtool_last_run_success", job="pgtool-refresh-mv") == [1.0]


@pytest.mark.all_versions
def test_unpopulated_views_get_a_plain_first_refresh(database):
    with database.connect() as conn:
        sample.apply_schema(conn)
    assert database.execute("SELECT bool_or(ispopulated) FROM pg_matviews")[0][0] is False
    first = run_pgtool("refresh-mv", "--dsn", database.dsn, "--all")
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("populated ") == 3
    assert database.execute("SELECT bool_and(ispopulated) FROM pg_matviews")[0][0] is True
    second = run_pgtool("refresh-mv", "--dsn", database.dsn, "--all")
    assert second.stdout.count("refreshed ") == 3


def test_view_without_unique_index_is_reported_not_blocked(database):
    database.execute("CREATE TABLE t (id int)")
    database.execute("INSERT INTO t VALUES (1)")
    database.execute("CREATE MATERIALIZED VIEW mv_plain AS SELECT count(*) AS n FROM t")
    database.execute("INSERT INTO t VALUES (2)")
    result = run_pgtool("refresh-mv", "--dsn", database.dsn, "mv_plain")
    assert result.returncode == 1
    assert "needs-unique-index" in result.stdout
    assert "CREATE UNIQUE INDEX CONCURRENTLY ON public.mv_plain" in result.stdout
    assert scalar(database, "SELECT n FROM mv_plain") == 1  # untouched
    blocking = run_pgtool("refresh-mv", "--dsn", database.dsn, "mv_plain", "--allow-blocking")
    assert blocking.returncode == 0, blocking.stderr
    assert "refreshed-blocking" in blocking.stdout
    assert scalar(database, "SELECT n FROM mv_plain") == 2


def test_usage_errors(database):
    assert run_pgtool("refresh-mv", "--dsn", database.dsn).returncode == 2
    missing = run_pgtool("refresh-mv", "--dsn", database.dsn, "no_such_view")
    assert missing.returncode == 2 and "not found" in missing.stderr
    bad = run_pgtool("refresh-mv", "--dsn", database.dsn, "--all", "--lock-timeout", "0")
    assert bad.returncode == 2 and "invalid lock timeout" in bad.stderr


def test_view_names_resolve_like_sql_names_without_the_sessions_search_path_running_anything(database):
    from pgtool.errors import UsageError
    from pgtool.pg.conn import connect
    from pgtool.schema.matviews import resolve_views

    database.execute('CREATE SCHEMA "Odd"')
    database.execute('CREATE MATERIALIZED VIEW "Odd"."Mixed Case" AS SELECT 1 AS id')
    database.execute("CREATE MATERIALIZED VIEW public.plain AS SELECT 1 AS id")
    database.execute('CREATE MATERIALIZED VIEW "Odd".plain AS SELECT 2 AS id')
    with connect(database.dsn, pin="transaction") as conn:
        got = resolve_views(conn, ["plain", "PLAIN", '"Odd".plain', '"Odd"."Mixed Case"', 'public."plain"'])
        assert [v.display for v in got] == [
            "public.plain",
            "public.plain",
            "Odd.plain",
            "Odd.Mixed Case",
            "public.plain",
        ]
        conn.execute('SET search_path = "Odd", public')  # a bare name follows the session's path
        assert [v.display for v in resolve_views(conn, ["plain"])] == ["Odd.plain"]
        for bad in ("a.b.c.d", '"unterminated', "", "Mixed Case", "nosuch"):
            with pytest.raises(UsageError, match="not found"):
                resolve_views(conn, [bad])
