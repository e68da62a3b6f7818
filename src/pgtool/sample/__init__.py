"""The e-commerce sample schema the whole toolkit shares (tests, `bench`, `demo`), and its seed data.

Usage::

    from pgtool.pg.conn import connect
    from pgtool import sample

    with connect(dsn) as conn:                       # autocommit (the default of pgtool's connect)
        sample.apply_schema(conn)                    # migrations 0001..0011, each applied once
        result = sample.seed(conn, scale=0.1, seed=7)  # ~1,000 orders, views populated
        print(result.counts)

Tables (in the current schema, normally `public`): users, categories, products (partial index
`products_low_stock_idx WHERE stock < 10`), carts, cart_items (`cart_items_user_reserved_idx` on
(user_id, reserved_until)), orders (range-partitioned monthly on created_at, PRIMARY KEY (id, created_at),
DEFAULT partition `orders_default`, monthly partitions `orders_pYYYY_MM`), order_items, saga_steps
(`saga_steps_due_idx`), and the materialized views mv_daily_revenue (unique on day),
mv_product_performance (unique on product_id) and mv_customer_summary (unique on user_id). A sale is an
order in status paid, shipped or delivered.

The migrations are plain SQL files (`migration_files()`), each `CREATE INDEX CONCURRENTLY` in a file of its
own, so they pass `pgtool lint` and any migration runner that sends one file per query string.
"""

from __future__ import annotations

from pgtool.sample.migrate import MIGRATIONS_DIR, Migration, apply_schema, migration_files, migrations
from pgtool.sample.seeddata import (
    SALE_STATUSES,
    SAMPLE_VIEWS,
    SeedResult,
    create_month_partitions,
    generate,
    refresh_views,
    seed,
)

__all__ = [
    "MIGRATIONS_DIR",
    "SALE_STATUSES",
    "SAMPLE_VIEWS",
    "Migration",
    "SeedResult",
    "apply_schema",
    "create_month_partitions",
    "generate",
    "migration_files",
    "migrations",
    "refresh_views",
    "seed",
]
