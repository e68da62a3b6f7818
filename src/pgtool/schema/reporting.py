"""Reports read from the sample schema's materialized views, on a reporting connection.

The reporting connection goes to the replica when one is given (`application_name` `pgtool-reporting`,
read-only transactions, 5-second connect timeout) and falls back to the primary, with a warning, when the
replica does not answer in time. A report with no row at all (the view is populated but empty: no
products, or no sales yet) raises NotFoundError naming the view, rather than printing an empty table
that looks like a result. Reports:

- sales: daily revenue with rolling 7- and 30-day averages over calendar days (days without sales count
  as 0: the series is filled with generate_series before the window functions run);
- turnover: inventory turnover per category over the last 30 days (units sold / units in stock) and the
  days of supply left at that pace, ranked by turnover with DENSE_RANK() (categories whose turnover, as
  shown, is equal share a rank, with no gap after them; categories without stock rank last); `limit` is
  the number of ranks;
- top-customers: customers ranked by total spent with DENSE_RANK(), ties sharing a rank; `limit` is the
  number of ranks, so a tie at the last rank shows every tied customer.

The views are read from `schema` (default `public`, where the sample schema normally lives), named
explicitly: pgtool's sessions pin search_path to '' (pgtool.pg.conn), so that whoever owns the database
cannot have pgtool run their functions in place of PostgreSQL's.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from pgtool.errors import ConnectError, NotFoundError, OperationError, UsageError
from pgtool.obs.logging import get_logger

REPORTING_APPLICATION_NAME = "pgtool-reporting"
REPLICA_CONNECT_TIMEOUT = 5
REPORTS = ("sales", "turnover", "top-customers")
DEFAULT_SCHEMA = "public"
VIEWS = ("mv_daily_revenue", "mv_product_performance", "mv_customer_summary")

SALES_SQL = """
WITH bounds AS (
    SELECT coalesce(%(until)s::date, max(day)) AS last_day FROM {mv_daily_revenue}
),
days AS (
    -- 29 extra days before the first shown so every shown row has a full 30-day window
    SELECT d::date AS day
    FROM bounds, generate_series(bounds.last_day - (%(days)s + 28), bounds.last_day, interval '1 day') AS d
),
filled AS (
    SELECT days.day, coalesce(r.orders, 0) AS orders, coalesce(r.revenue, 0) AS revenue
    FROM days LEFT JOIN {mv_daily_revenue} r USING (day)
),
rolling AS (
    SELECT day, orders, revenue,
           SUM(revenue) OVER (ORDER BY day ROWS BETWEEN 6 PRECEDING AND CURRENT ROW) / 7 AS avg_7d,
           SUM(revenue) OVER (ORDER BY day ROWS BETWEEN 29 PRECEDING AND CURRENT ROW) / 30 AS avg_30d
    FROM filled
)
SELECT day, orders, revenue, round(avg_7d, 2) AS avg_7d, round(avg_30d, 2) AS avg_30d
FROM rolling, bounds
WHERE day > bounds.last_day - %(days)s
ORDER BY day
"""

TURNOVER_SQL = """
WITH per_category AS (
    SELECT category,
           sum(units_sold_30d)::bigint AS units_sold_30d,
           sum(stock)::bigint AS stock,
           round(sum(units_sold_30d)::numeric / nullif(sum(stock), 0), 3) AS turnover_30d,
           round(sum(stock) * 30.0 / nullif(sum(units_sold_30d), 0), 1) AS days_of_supply
    FROM {mv_product_performance}
    GROUP BY category
),
ranked AS (
    -- ranked on the rounded value shown, so rows that read the same share a rank
    SELECT DENSE_RANK() OVER (ORDER BY turnover_30d DESC NULLS LAST) AS rank, *
    FROM per_category
)
SELECT rank, category, units_sold_30d, stock, turnover_30d, days_of_supply
FROM ranked
WHERE rank <= %(limit)s
ORDER BY rank, category
"""

TOP_CUSTOMERS_SQL = """
SELECT rank, user_id, email, orders, total_spent, last_order_at
FROM (
    SELECT DENSE_RANK() OVER (ORDER BY total_spent DESC) AS rank,
           user_id, email, orders, total_spent, last_order_at
    FROM {mv_customer_summary}
    WHERE orders > 0
) ranked
WHERE rank <= %(limit)s
ORDER BY rank, user_id
"""

QUERIES = {"sales": SALES_SQL, "turnover": TURNOVER_SQL, "top-customers": TOP_CUSTOMERS_SQL}
SOURCES = {
    "sales": "mv_daily_revenue",
    "turnover": "mv_product_performance",
    "top-customers": "mv_customer_summary",
}


def reporting_connection(primary_dsn: str, replica_dsn: str | None) -> tuple[psycopg.Connection[Any], str]:
    """A read-only reporting connection and where it went: the replica if it answers within 5 s, else
    the primary (logged as a warning). Raises ConnectError when the primary cannot be reached either."""
    from pgtool.pg.conn import connect

    options = "-c default_transaction_read_only=on"
    if replica_dsn:
        try:
            conn = connect(
                replica_dsn,
                application_name=REPORTING_APPLICATION_NAME,
                connect_timeout=REPLICA_CONNECT_TIMEOUT,
                options=options,
            )
            return conn, "replica"
        except ConnectError as exc:
            get_logger().warning(
                "replica did not answer; reporting from the primary", error=exc.message, fallback="primary"
            )
    return connect(primary_dsn, application_name=REPORTING_APPLICATION_NAME, options=options), "primary"


def report_query(name: str, schema: str = DEFAULT_SCHEMA) -> sql.Composed:
    """Report `name`'s SQL with its views qualified by `schema`."""
    return sql.SQL(QUERIES[name]).format(**{view: sql.Identifier(schema, view) for view in VIEWS})


def run_report(
    conn: psycopg.Connection[Any],
    name: str,
    *,
    days: int = 30,
    limit: int = 10,
    until: date | None = None,
    schema: str = DEFAULT_SCHEMA,
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run report `name` and return (column names, rows).

    days: sales rows shown (the last `days` days up to `until`, default the newest day in the view).
    limit: top-customers / turnover ranks shown (ties share a rank, so a tie can show more rows).
    schema: the schema holding the sample views.
    Raises UsageError for an unknown report or bad sizes, OperationError when the views are missing or
    not populated (with the command that fixes it), NotFoundError when the report has no row.
    """
    if name not in QUERIES:
        raise UsageError(f"unknown report {name!r}", hint=f"one of: {', '.join(REPORTS)}")
    if days < 1 or limit < 1:
        raise UsageError("--days and --limit must be 1 or more")
    conn.prepare_threshold = None
    try:
        cur = conn.execute(report_query(name, schema), {"days": days, "limit": limit, "until": until})
    except psycopg.errors.UndefinedTable as exc:
        raise OperationError(
            f"report {name}: {' '.join(str(exc).split())}",
            hint="the reporting views come with the sample schema (pgtool.sample.apply_schema)",
        ) from None
    except psycopg.errors.ObjectNotInPrerequisiteState as exc:
        raise OperationError(
            f"report {name}: {' '.join(str(exc).split())}", hint="populate it: pgtool refresh-mv --all"
        ) from None
    except psycopg.Error as exc:
        raise OperationError(f"report {name} failed: {' '.join(str(exc).split())}") from None
    columns = [c.name for c in cur.description or []]
    rows = cur.fetchall()
    if not rows:
        raise NotFoundError(
            f"report {name}: {schema}.{SOURCES[name]} holds nothing to report",
            hint="the view is empty; refresh it if the tables have rows since: pgtool refresh-mv --all",
        )
    return columns, rows


# -- output --------------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value) if value != value.to_integral_value() else int(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def to_json(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    return json.dumps([{c: _plain(v) for c, v in zip(columns, row, strict=True)} for row in rows], indent=2)


def to_csv(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(
            ["" if v is None else (v.isoformat() if isinstance(v, datetime | date) else v) for v in row]
        )
    return out.getvalue()


def to_table(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    cells = [
        ["" if v is None else (v.isoformat() if isinstance(v, datetime | date) else str(v)) for v in row]
        for row in rows
    ]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    numeric = [
        all(isinstance(row[i], int | float | Decimal) or row[i] is None for row in rows)
        for i in range(len(columns))
    ]

    def fmt(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)
        )

    lines = [fmt(columns).rstrip(), "  ".join("-" * w for w in widths)]
    lines += [fmt(r).rstrip() for r in cells]
    return "\n".join(lines) + "\n"
