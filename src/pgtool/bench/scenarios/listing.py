"""category_filter / low_stock_filter: the same listing without and with the index made for it.

To compare "without" and "with" on identical data, setup copies `products` twice, row for row in the
same order: `bench_products_plain` (primary key only, as the sample schema leaves `category_id`
unindexed) and `bench_products_indexed` with the listing's targeted index `(category_id, price, id)` -
it returns a category's cheapest products in order, no sort, no scan of other categories - and the
sample schema's partial low-stock index `(stock) WHERE stock < 10`. Both are VACUUM ANALYZEd, so
visibility maps and statistics are alike. What the index buys grows with the table: at the sample's
scale 1 (500 products) a sequential scan is cheap, and the gap widens with --scale.
"""

from __future__ import annotations

import random
from typing import Any

from psycopg import sql

from pgtool.bench.scenario import Conn, Scenario, Variant

PLAIN = "bench_products_plain"
INDEXED = "bench_products_indexed"
INPUTS = 1024
LISTING_LIMIT = 20

CATEGORY_LISTING = (
    "SELECT id, sku, name, price, stock FROM {} WHERE category_id = %s ORDER BY price, id LIMIT {}"
)
LOW_STOCK_LISTING = "SELECT id, sku, name, stock FROM {} WHERE stock < 10 ORDER BY stock, id"


def create_listing_tables(conn: Conn) -> None:
    """The two identical copies of products (once per run; later calls find them)."""
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (INDEXED,)).fetchone()[0]
    if exists:
        return
    for table in (PLAIN, INDEXED):
        ident = sql.Identifier(table)
        conn.execute(sql.SQL("CREATE TABLE {} AS SELECT * FROM products ORDER BY id").format(ident))
        conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (id)").format(ident))
    conn.execute(sql.SQL("CREATE INDEX ON {} (category_id, price, id)").format(sql.Identifier(INDEXED)))
    conn.execute(sql.SQL("CREATE INDEX ON {} (stock) WHERE stock < 10").format(sql.Identifier(INDEXED)))
    for table in (PLAIN, INDEXED):
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))


def _listing(template: str, table: str, conn: Conn, **extra: Any) -> str:
    return sql.SQL(template).format(sql.Identifier(table), **extra).as_string(conn)


class CategoryFilter(Scenario):
    name = "category_filter"
    summary = "category listing (cheapest 20): no index on category_id vs (category_id, price, id)"

    def setup(self, conn: Conn) -> None:
        create_listing_tables(conn)
        categories = [row[0] for row in conn.execute("SELECT DISTINCT category_id FROM products ORDER BY 1")]
        rng = random.Random(self.name)  # noqa: S311 - reproducible inputs, not secrets
        self.inputs = [rng.choice(categories) for _ in range(INPUTS)]
        limit = sql.Literal(LISTING_LIMIT)
        self.plain = sql.SQL(CATEGORY_LISTING).format(sql.Identifier(PLAIN), limit).as_string(conn)
        self.indexed = sql.SQL(CATEGORY_LISTING).format(sql.Identifier(INDEXED), limit).as_string(conn)

    def without_index(self, conn: Conn, i: int) -> Any:
        return conn.execute(self.plain, (self.inputs[i % INPUTS],)).fetchall()

    def with_index(self, conn: Conn, i: int) -> Any:
        return conn.execute(self.indexed, (self.inputs[i % INPUTS],)).fetchall()

    def variants(self) -> list[Variant]:
        return [Variant("no_index", self.without_index), Variant("category_index", self.with_index)]


class LowStockFilter(Scenario):
    name = "low_stock_filter"
    summary = "low-stock listing (stock < 10): sequential scan vs the partial index WHERE stock < 10"

    def setup(self, conn: Conn) -> None:
        create_listing_tables(conn)
        self.plain = sql.SQL(LOW_STOCK_LISTING).format(sql.Identifier(PLAIN)).as_string(conn)
        self.indexed = sql.SQL(LOW_STOCK_LISTING).format(sql.Identifier(INDEXED)).as_string(conn)

    def without_index(self, conn: Conn, i: int) -> Any:
        return conn.execute(self.plain).fetchall()

    def with_index(self, conn: Conn, i: int) -> Any:
        return conn.execute(self.indexed).fetchall()

    def variants(self) -> list[Variant]:
        return [Variant("no_index", self.without_index), Variant("partial_index", self.with_index)]
