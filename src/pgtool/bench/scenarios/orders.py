"""order_create_N: create an order with N items - one INSERT per item versus all items at once.

The baseline does what an order service writes first: in one transaction, insert the order header
(RETURNING its id and created_at, which the items carry) and then one INSERT per item: N + 3 round trips
(BEGIN, header, N items, COMMIT). The rewrites, all measured, the best reported:

- `multi_row_insert`: header and items in one statement - a data-modifying CTE inserting the header,
  whose RETURNING feeds a multi-row `VALUES` list of the items: one round trip, atomic as any statement;
- `unnest_arrays`: the same single statement with the items passed as four arrays and `unnest()`ed
  (one parameter per column instead of one per value; the query text does not depend on N);
- `copy`: header, then the items with COPY, in a transaction (COPY cannot sit in a CTE): BEGIN, header,
  COPY, COMMIT;
- `executemany_pipeline`: header, then psycopg's `executemany`, which pipelines the N INSERTs into one
  round trip, in a transaction.

Every variant must also refuse the same bad order the same way: an order whose lines repeat a line
number breaks `order_items`' primary key (23505), and each variant answers
`AlreadyExists('order_items_pkey')` with nothing stored (the transaction or the single statement rolled
back). `check()` runs that input (`DUPLICATE_LINE`) besides the ordinary ones.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

from pgtool.bench.outcomes import AlreadyExists, NotFound, one_row, unique_checked
from pgtool.bench.scenario import Conn, Scenario, Variant
from pgtool.errors import OperationError

INPUTS = 1024
# Input index of the order whose last line repeats the first line's number (timed runs use i >= 0).
DUPLICATE_LINE = -1
UNNEST_ITEMS = (
    "unnest(%s::int[], %s::bigint[], %s::int[], %s::numeric[]) "
    "AS u(line_no, product_id, quantity, unit_price)"
)
ITEM_COLUMNS = "order_id, order_created_at, line_no, product_id, quantity, unit_price"
INSERT_ORDER = (
    "INSERT INTO orders (user_id, status, total) VALUES (%s, 'pending', %s) RETURNING id, created_at"
)
INSERT_ITEM = f"INSERT INTO order_items ({ITEM_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)"
COPY_ITEMS = f"COPY order_items ({ITEM_COLUMNS}) FROM STDIN"
ONE_STATEMENT_UNNEST = (
    "WITH o AS (INSERT INTO orders (user_id, status, total) VALUES (%s, 'pending', %s) "
    "RETURNING id, created_at), "
    f"i AS (INSERT INTO order_items ({ITEM_COLUMNS}) "
    f"SELECT o.id, o.created_at, u.line_no, u.product_id, u.quantity, u.unit_price FROM o, {UNNEST_ITEMS}) "
    "SELECT id FROM o"
)


@dataclass(frozen=True)
class OrderInput:
    user_id: int
    total: Decimal
    line_nos: list[int]
    product_ids: list[int]
    quantities: list[int]
    prices: list[Decimal]


class OrderCreate(Scenario):
    items: ClassVar[int] = 20
    check_inputs = (0, 1, 2, 3, 4, DUPLICATE_LINE)

    def setup(self, conn: Conn) -> None:
        values = ", ".join(["(%s::int, %s::bigint, %s::int, %s::numeric)"] * self.items)
        self.one_statement_values = (
            "WITH o AS (INSERT INTO orders (user_id, status, total) VALUES (%s, 'pending', %s) "
            "RETURNING id, created_at), "
            f"i AS (INSERT INTO order_items ({ITEM_COLUMNS}) "
            "SELECT o.id, o.created_at, v.line_no, v.product_id, v.quantity, v.unit_price "
            f"FROM o, (VALUES {values}) AS v(line_no, product_id, quantity, unit_price)) "
            "SELECT id FROM o"
        )
        products = conn.execute("SELECT id, price FROM products ORDER BY id").fetchall()
        users = [row[0] for row in conn.execute("SELECT id FROM users ORDER BY id")]
        if len(products) < self.items or not users:
            raise OperationError(
                f"bench scenario {self.name} needs at least {self.items} products and one user",
                hint="raise --scale",
            )
        rng = random.Random(self.name)  # noqa: S311 - reproducible inputs, not secrets
        self.inputs: list[OrderInput] = []
        for _ in range(INPUTS):
            chosen = rng.sample(products, self.items)
            quantities = [rng.choice((1, 1, 1, 2, 3)) for _ in chosen]
            self.inputs.append(
                OrderInput(
                    user_id=rng.choice(users),
                    total=sum((q * p for q, (_i, p) in zip(quantities, chosen, strict=True)), Decimal(0)),
                    line_nos=list(range(1, self.items + 1)),
                    product_ids=[pid for pid, _p in chosen],
                    quantities=quantities,
                    prices=[price for _pid, price in chosen],
                )
            )
        first = self.inputs[0]
        self.duplicate_line = OrderInput(
            user_id=first.user_id,
            total=first.total,
            line_nos=[*first.line_nos[:-1], first.line_nos[0]],
            product_ids=first.product_ids,
            quantities=first.quantities,
            prices=first.prices,
        )

    def _input(self, i: int) -> OrderInput:
        return self.duplicate_line if i == DUPLICATE_LINE else self.inputs[i % INPUTS]

    def _rows(self, order: Any, data: OrderInput) -> list[tuple[Any, ...]]:
        oid, created = order
        return [
            (oid, created, n, pid, q, price)
            for n, pid, q, price in zip(
                data.line_nos, data.product_ids, data.quantities, data.prices, strict=True
            )
        ]

    def per_item(self, conn: Conn, i: int) -> Any:
        data = self._input(i)
        with conn.transaction():
            order = conn.execute(INSERT_ORDER, (data.user_id, data.total)).fetchone()
            for row in self._rows(order, data):
                conn.execute(INSERT_ITEM, row)
        return order[0]

    def multi_row(self, conn: Conn, i: int) -> Any:
        data = self._input(i)
        params: list[Any] = [data.user_id, data.total]
        for row in zip(data.line_nos, data.product_ids, data.quantities, data.prices, strict=True):
            params.extend(row)
        return conn.execute(self.one_statement_values, params).fetchone()[0]

    def unnest(self, conn: Conn, i: int) -> Any:
        data = self._input(i)
        row = conn.execute(
            ONE_STATEMENT_UNNEST,
            (data.user_id, data.total, data.line_nos, data.product_ids, data.quantities, data.prices),
        ).fetchone()
        return row[0]

    def copy(self, conn: Conn, i: int) -> Any:
        data = self._input(i)
        with conn.transaction():
            order = conn.execute(INSERT_ORDER, (data.user_id, data.total)).fetchone()
            with conn.cursor() as cur, cur.copy(COPY_ITEMS) as copy:
                for row in self._rows(order, data):
                    copy.write_row(row)
        return order[0]

    def executemany(self, conn: Conn, i: int) -> Any:
        data = self._input(i)
        with conn.transaction():
            order = conn.execute(INSERT_ORDER, (data.user_id, data.total)).fetchone()
            with conn.cursor() as cur:
                cur.executemany(INSERT_ITEM, self._rows(order, data))
        return order[0]

    def variants(self) -> list[Variant]:
        return [
            Variant("per_item_insert", unique_checked(self.per_item)),
            Variant("multi_row_insert", unique_checked(self.multi_row)),
            Variant("unnest_arrays", unique_checked(self.unnest)),
            Variant("copy", unique_checked(self.copy)),
            Variant("executemany_pipeline", unique_checked(self.executemany)),
        ]

    def outcome(self, conn: Conn, raw: Any) -> Any:
        """The order as stored: header (user, status, total) and its lines, ids left out; a refused
        order (AlreadyExists) as it is."""
        if isinstance(raw, AlreadyExists):
            return raw
        header = one_row(
            conn.execute("SELECT user_id, status, total FROM orders WHERE id = %s", (raw,)).fetchone(),
            "order",
        )
        if isinstance(header, NotFound):
            return header
        lines = conn.execute(
            "SELECT line_no, product_id, quantity, unit_price, order_created_at = o.created_at "
            "FROM order_items JOIN orders o ON o.id = order_id WHERE order_id = %s ORDER BY line_no",
            (raw,),
        ).fetchall()
        return header, lines


class OrderCreate20(OrderCreate):
    name = "order_create_20"
    summary = "create an order with 20 items: one INSERT per item vs all items in one round trip"
    items = 20


class OrderCreate5(OrderCreate):
    name = "order_create_5"
    summary = "create an order with 5 items: one INSERT per item vs all items in one round trip"
    items = 5
