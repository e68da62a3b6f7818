"""pgtool report: window-function results checked against values computed here from the base tables."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal

import pytest

from pgharness import run_pgtool
from pgtool import sample
from pgtool.pg.cluster import free_port
from pgtool.schema.reporting import REPORTING_APPLICATION_NAME, reporting_connection

SALES = ("paid", "shipped", "delivered")


def report(db, *args):
    result = run_pgtool("report", *args, "--dsn", db.dsn)
    assert result.returncode == 0, result.stderr
    return result


def daily_revenue(db) -> dict:
    revenue: dict = defaultdict(Decimal)
    for status, total, day in db.execute(
        "SELECT status, total, (created_at AT TIME ZONE 'UTC')::date FROM orders"
    ):
        if status in SALES:
            revenue[day] += total
    return revenue


@pytest.mark.all_versions
def test_sales_rolling_averages_match_an_independent_computation(sample_db):
    revenue = daily_revenue(sample_db)
    last = max(revenue)
    rows = json.loads(report(sample_db, "sales", "--days", "20", "--format", "json").stdout)
    assert [r["day"] for r in rows] == [(last - timedelta(days=19 - i)).isoformat() for i in range(20)]
    for row in rows:
        day = date.fromisoformat(row["day"])

        def window(n: int, end: date = day) -> Decimal:
            return sum((revenue.get(end - timedelta(days=i), Decimal(0)) for i in range(n)), Decimal(0))

        assert Decimal(str(row["revenue"])) == revenue.get(day, Decimal(0))
        assert Decimal(str(row["avg_7d"])) == (window(7) / 7).quantize(Decimal("0.01"))
        assert Decimal(str(row["avg_30d"])) == (window(30) / 30).quantize(Decimal("0.01"))


def test_top_customers_share_ranks_on_ties(sample_db):
    totals: dict = defaultdict(Decimal)
    for user, status, total in sample_db.execute("SELECT user_id, status, total FROM orders"):
        if status in SALES:
            totals[user] += total
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
    (second, second_total), (third, third_total) = ranked[1], ranked[2]
    # make the third customer tie with the second
    sample_db.execute(
        "INSERT INTO orders (user_id, status, total, created_at) "
        "VALUES (%s, 'paid', %s, '2026-03-01 12:00+00')",
        (third, second_total - third_total),
    )
    totals[third] = second_total
    with sample_db.connect() as conn:
        sample.refresh_views(conn)
    rows = json.loads(report(sample_db, "top-customers", "--limit", "3", "--format", "json").stdout)
    # independent DENSE_RANK
    distinct = sorted(set(totals.values()), reverse=True)
    expected = sorted(
        ((distinct.index(t) + 1, u) for u, t in totals.items() if distinct.index(t) < 3), key=lambda r: r
    )
    assert [(r["rank"], r["user_id"]) for r in rows] == expected
    assert [r["rank"] for r in rows][:3] == [1, 2, 2]
    assert rows[-1]["rank"] == 3  # dense: no gap after the tie
    assert {r["user_id"] for r in rows if r["rank"] == 2} == {second, third}


def test_turnover_and_csv_output(sample_db):
    out = report(sample_db, "turnover", "--format", "csv", "--limit", "100").stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    expected = {
        cat: (int(stock), int(sold))
        for cat, stock, sold in sample_db.execute(
            "SELECT category, sum(stock), sum(units_sold_30d) FROM mv_product_performance GROUP BY 1"
        )
    }
    assert {r["category"] for r in rows} == set(expected)
    for r in rows:
        stock, sold = expected[r["category"]]
        assert int(r["stock"]) == stock and int(r["units_sold_30d"]) == sold
        if stock:
            assert Decimal(r["turnover_30d"]) == (Decimal(sold) / stock).quantize(Decimal("0.001"))


def test_table_output_and_fallback_to_primary_when_the_replica_is_closed(sample_db):
    closed = f"host=127.0.0.1 port={free_port()} dbname={sample_db.name} user=postgres"
    result = run_pgtool(
        "report", "top-customers", "--dsn", sample_db.dsn, "--replica-dsn", closed, "--format", "table"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].split() == [
        "rank",
        "user_id",
        "email",
        "orders",
        "total_spent",
        "last_order_at",
    ]
    assert "replica did not answer; reporting from the primary" in result.stderr
    assert '"source": "primary"' in result.stderr


def test_reporting_connection_prefers_the_replica_and_names_itself(sample_db):
    conn, source = reporting_connection(sample_db.dsn + " dbname=postgres", sample_db.dsn)
    with conn:
        assert source == "replica"
        assert conn.execute("SHOW application_name").fetchone()[0] == REPORTING_APPLICATION_NAME
        assert conn.execute("SHOW default_transaction_read_only").fetchone()[0] == "on"
        assert conn.info.dbname == sample_db.name


def test_unpopulated_views_and_bad_arguments(database):
    with database.connect() as conn:
        sample.apply_schema(conn)
    result = run_pgtool("report", "sales", "--dsn", database.dsn)
    assert result.returncode == 1
    assert "pgtool refresh-mv --all" in result.stderr
    bad = run_pgtool("report", "nonsense", "--dsn", database.dsn)
    assert bad.returncode == 2 and "unknown report" in bad.stderr


def test_views_in_another_schema_with_schema_option(database):
    # pgtool's session has search_path '' pinned: the views are found by --schema, never through a path.
    database.execute("CREATE SCHEMA shop")
    with database.connect() as conn:
        conn.execute("SET search_path = shop")
        sample.apply_schema(conn)
        sample.seed(conn, scale=0.02, seed=5, days=30)
    missing = run_pgtool("report", "turnover", "--dsn", database.dsn, "--format", "json")
    assert (
        missing.returncode == 1
        and 'relation \\"public.mv_product_performance\\" does not exist' in missing.stderr
    )
    rows = json.loads(report(database, "turnover", "--schema", "shop", "--format", "json").stdout)
    assert rows and all(r["category"] for r in rows)


def _turnover_source(database, schema: str, rows: list[tuple[str, int, int]]) -> None:
    # The report reads category, stock and units_sold_30d: a plain table under the view's name, in a
    # schema of its own (--schema), pins exact values, ties included.
    database.execute(f"CREATE SCHEMA {schema}")
    database.execute(
        f"CREATE TABLE {schema}.mv_product_performance (category text, stock int, units_sold_30d bigint)"
    )
    with database.connect() as conn:
        for row in rows:
            conn.execute(f"INSERT INTO {schema}.mv_product_performance VALUES (%s, %s, %s)", row)


@pytest.mark.all_versions
def test_turnover_ranks_ties_densely(database):
    _turnover_source(
        database,
        "ties",
        [
            ("fast", 100, 30),  # 0.300
            ("even_a", 100, 10),  # 0.100
            ("even_b", 50, 5),  # two products: 20 / 200 = 0.100, tied with even_a
            ("even_b", 150, 15),
            ("slow", 100, 5),  # 0.050
            ("no_stock", 0, 3),  # no turnover: ranks last
        ],
    )
    rows = json.loads(report(database, "turnover", "--schema", "ties", "--format", "json").stdout)
    assert [(r["rank"], r["category"]) for r in rows] == [
        (1, "fast"),
        (2, "even_a"),
        (2, "even_b"),
        (3, "slow"),  # dense: no gap after the tie (RANK would say 4)
        (4, "no_stock"),
    ]
    assert rows[1]["turnover_30d"] == rows[2]["turnover_30d"] == 0.1
    # --limit counts ranks, so the tie shows whole and the rank after it still fits
    top3 = json.loads(
        report(database, "turnover", "--schema", "ties", "--limit", "3", "--format", "json").stdout
    )
    assert [r["category"] for r in top3] == ["fast", "even_a", "even_b", "slow"]


def test_a_report_with_no_row_is_not_found(database):
    _turnover_source(database, "bare", [])
    result = run_pgtool("report", "turnover", "--schema", "bare", "--dsn", database.dsn, "--format", "json")
    assert result.returncode == 1, result.stderr
    assert "bare.mv_product_performance holds nothing to report" in result.stderr
    assert result.stdout == ""
