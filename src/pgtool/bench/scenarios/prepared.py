"""prepared_cache: the same hot queries with psycopg's server-side prepared statements off and on.

`prepare_threshold=None` is what a connection through PgBouncer in transaction mode needs (PgBouncer
1.18 cannot carry prepared statements): every execution is parsed and planned again. `prepare_threshold=0`
prepares each query on first use, so later executions skip parse and plan (psycopg's default, 5, does
the same after five uses). What this saves is planning time: it grows with joins and partitions and is
invisible for trivial queries, so the hot queries here are the shop's real ones - a product page (four
relations), an open-cart summary, and an order page on the partitioned `orders`. A product or order
that is not there is `NotFound` in both variants (`check()` asks for one of each, `MISSING`).
"""

from __future__ import annotations

import random
from typing import Any

from pgtool.bench.outcomes import one_row
from pgtool.bench.scenario import Conn, Scenario, Variant
from pgtool.errors import OperationError

INPUTS = 1024
# Input index of a product id and an order past the newest (timed runs use i >= 0).
MISSING = -1
PRODUCT_PAGE = (
    "SELECT p.id, p.sku, p.name, p.price, p.stock, c.name, parent.name, coalesce(pp.units_sold_30d, 0) "
    "FROM products p JOIN categories c ON c.id = p.category_id "
    "LEFT JOIN categories parent ON parent.id = c.parent_id "
    "LEFT JOIN mv_product_performance pp ON pp.product_id = p.id "
    "WHERE p.id = %s"
)
CART_SUMMARY = (
    "SELECT c.id, count(ci.product_id), coalesce(sum(ci.quantity * p.price), 0) "
    "FROM carts c LEFT JOIN cart_items ci ON ci.cart_id = c.id LEFT JOIN products p ON p.id = ci.product_id "
    "WHERE c.user_id = %s AND c.status = 'open' GROUP BY c.id ORDER BY c.id"
)
ORDER_PAGE = (
    "SELECT o.id, o.status, o.total, count(oi.line_no), coalesce(sum(oi.quantity), 0) "
    "FROM orders o JOIN order_items oi ON oi.order_id = o.id AND oi.order_created_at = o.created_at "
    "WHERE o.id = %s AND o.created_at = %s GROUP BY o.id, o.status, o.total"
)


class PreparedCache(Scenario):
    name = "prepared_cache"
    summary = "hot queries (product page, cart, order page): prepare_threshold=None vs prepared"
    needs_session = True
    check_inputs = (0, 1, 2, 3, 4, MISSING)

    def setup(self, conn: Conn) -> None:
        products = [row[0] for row in conn.execute("SELECT id FROM products ORDER BY id")]
        users = [row[0] for row in conn.execute("SELECT DISTINCT user_id FROM carts ORDER BY 1")]
        orders = conn.execute("SELECT id, created_at FROM orders ORDER BY id LIMIT 5000").fetchall()
        if not (products and users and orders):
            raise OperationError("bench scenario prepared_cache needs seeded data", hint="raise --scale")
        rng = random.Random(self.name)  # noqa: S311 - reproducible inputs, not secrets
        self.inputs = [(rng.choice(products), rng.choice(users), rng.choice(orders)) for _ in range(INPUTS)]
        past = conn.execute("SELECT max(id) + 1 FROM orders").fetchone()[0]
        self.missing = (max(products) + 1, users[0], (past, orders[0][1]))

    def hot_queries(self, conn: Conn, i: int) -> Any:
        product, user, (order, created) = self.missing if i == MISSING else self.inputs[i % INPUTS]
        return (
            one_row(conn.execute(PRODUCT_PAGE, (product,)).fetchone(), "product"),
            conn.execute(CART_SUMMARY, (user,)).fetchall(),
            one_row(conn.execute(ORDER_PAGE, (order, created)).fetchone(), "order"),
        )

    def variants(self) -> list[Variant]:
        return [
            Variant("prepare_threshold_none", self.hot_queries, {"prepare_threshold": None}),
            Variant("prepared", self.hot_queries, {"prepare_threshold": 0}),
        ]
