"""Deterministic seed data for the sample schema, loaded with COPY.

Every value comes from one `random.Random(seed)`, and timestamps are offsets from `until`, so the same
(scale, seed, until, days) always produces the same rows. Sizes at scale 1 (they grow linearly; each has a
small floor so tiny scales still make sense):

    categories 32 (fixed)   users 2,000   products 500   orders 10,000 (~25,000 order lines,
    30,000 saga steps)      carts 300 (~750 cart items)

Orders are spread over the `days` days before `until`, skewed towards a minority of heavy customers and
popular products, with realistic statuses (most delivered, some cancelled or refunded). About 10 % of
products are low on stock (< 10), which is what `products_low_stock_idx` serves.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from pgtool.errors import AlreadyExistsError, OperationError, UsageError, error_line

BASE_SIZES = {"users": 2000, "products": 500, "orders": 10000, "carts": 300}
MIN_SIZES = {"users": 20, "products": 20, "orders": 50, "carts": 5}

TOP_CATEGORIES = ("Electronics", "Books", "Home", "Garden", "Toys", "Sports", "Fashion", "Beauty")
SUB_CATEGORIES = ("Essentials", "Premium", "Outlet")
FIRST_NAMES = ("Ada", "Alan", "Barbara", "Claude", "Donald", "Edsger", "Frances", "Grace", "John", "Ken")
LAST_NAMES = ("Lovelace", "Turing", "Liskov", "Shannon", "Knuth", "Dijkstra", "Allen", "Hopper", "Backus")
COUNTRIES = (("DE", 30), ("FR", 20), ("NL", 10), ("US", 25), ("GB", 10), ("PL", 5))
ADJECTIVES = ("Compact", "Classic", "Smart", "Eco", "Pro", "Mini", "Deluxe", "Rugged", "Silent", "Bright")
NOUNS = ("Lamp", "Kettle", "Backpack", "Speaker", "Notebook", "Drill", "Ball", "Jacket", "Serum", "Chair")
# (status, weight) of orders, and the saga each status implies: (step, step status) in order.
ORDER_STATUSES = (
    ("delivered", 55),
    ("shipped", 10),
    ("paid", 10),
    ("pending", 5),
    ("cancelled", 15),
    ("refunded", 5),
)
SAGA_STEPS = ("reserve_stock", "charge_payment", "ship")
SAGA_BY_STATUS = {
    "pending": ("done", "pending", "pending"),
    "paid": ("done", "done", "pending"),
    "shipped": ("done", "done", "done"),
    "delivered": ("done", "done", "done"),
    "cancelled": ("compensated", "failed", "compensated"),
    "refunded": ("done", "compensated", "compensated"),
}
SALE_STATUSES = ("paid", "shipped", "delivered")
SAMPLE_VIEWS = ("mv_daily_revenue", "mv_product_performance", "mv_customer_summary")


@dataclass
class SeedResult:
    """What `seed()` loaded: row counts per table and the time range of the orders."""

    counts: dict[str, int] = field(default_factory=dict)
    first_order_at: datetime | None = None
    last_order_at: datetime | None = None
    partitions: list[str] = field(default_factory=list)


def _cents(value: int) -> Decimal:
    return Decimal(value).scaleb(-2)


def _size(name: str, scale: float) -> int:
    return max(MIN_SIZES[name], round(BASE_SIZES[name] * scale))


def _weighted(rng: random.Random, choices: Sequence[tuple[str, int]]) -> str:
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]


def _skewed_index(rng: random.Random, n: int) -> int:
    """An index in [0, n) favouring low values: a few heavy customers, a few best-selling products."""
    return min(n - 1, int(n * rng.random() ** 2.5))


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def generate(
    scale: float = 1.0, seed: int = 42, until: datetime | None = None, days: int = 180
) -> dict[str, list[tuple[Any, ...]]]:
    """The rows `seed()` loads, per table, as tuples in COPY column order (see COLUMNS)."""
    if scale <= 0:
        raise UsageError(f"scale must be positive, got {scale}")
    if days < 1:
        raise UsageError(f"days must be at least 1, got {days}")
    end = (until or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    start = end - timedelta(days=days)
    rng = random.Random(seed)  # noqa: S311 - reproducible sample data, not secrets
    rows: dict[str, list[tuple[Any, ...]]] = {name: [] for name in COLUMNS}

    leaf_categories: list[int] = []
    for top_index, top in enumerate(TOP_CATEGORIES):
        top_id = top_index + 1
        rows["categories"].append((top_id, top, None))
    for top_index, top in enumerate(TOP_CATEGORIES):
        for sub in SUB_CATEGORIES:
            cat_id = len(rows["categories"]) + 1
            rows["categories"].append((cat_id, f"{top} {sub}", top_index + 1))
            leaf_categories.append(cat_id)

    n_users = _size("users", scale)
    for uid in range(1, n_users + 1):
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        country = _weighted(rng, COUNTRIES)
        created = start - timedelta(seconds=rng.randrange(365 * 86400))
        rows["users"].append((uid, f"user{uid}@example.com", name, country, created))

    n_products = _size("products", scale)
    prices: list[int] = []
    for pid in range(1, n_products + 1):
        price = max(100, min(200000, round(rng.lognormvariate(3.3, 0.8) * 100)))
        prices.append(price)
        stock = rng.randrange(10) if rng.random() < 0.1 else rng.randrange(10, 500)
        name = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {pid}"
        created = start - timedelta(seconds=rng.randrange(365 * 86400))
        category = rng.choice(leaf_categories)
        rows["products"].append((pid, f"SKU-{pid:06d}", name, category, _cents(price), stock, created))

    n_orders = _size("orders", scale)
    span = int((end - start).total_seconds())
    times = sorted(start + timedelta(seconds=rng.randrange(span)) for _ in range(n_orders))
    saga_id = 0
    for oid, created in enumerate(times, start=1):
        user = _skewed_index(rng, n_users) + 1
        status = _weighted(rng, ORDER_STATUSES)
        total = 0
        products_in_order: list[int] = []
        for _ in range(rng.randint(1, 4)):
            product = _skewed_index(rng, n_products) + 1
            if product not in products_in_order:
                products_in_order.append(product)
        for line_no, product in enumerate(products_in_order, start=1):
            quantity = rng.choices((1, 2, 3), weights=(70, 20, 10))[0]
            total += quantity * prices[product - 1]
            rows["order_items"].append(
                (oid, created, line_no, product, quantity, _cents(prices[product - 1]))
            )
        rows["orders"].append((oid, user, status, _cents(total), created))
        for step, step_status in zip(SAGA_STEPS, SAGA_BY_STATUS[status], strict=True):
            saga_id += 1
            attempts = 3 if step_status == "failed" else (0 if step_status == "pending" else 1)
            next_attempt = created + timedelta(minutes=1) if step_status in ("pending", "failed") else None
            updated = created + timedelta(minutes=5 * (SAGA_STEPS.index(step) + 1))
            rows["saga_steps"].append(
                (saga_id, oid, created, step, step_status, attempts, next_attempt, updated)
            )

    n_carts = _size("carts", scale)
    for cid in range(1, n_carts + 1):
        user = rng.randrange(n_users) + 1
        status = _weighted(rng, (("open", 60), ("abandoned", 30), ("checked_out", 10)))
        created = end - timedelta(seconds=rng.randrange(14 * 86400))
        rows["carts"].append((cid, user, status, created, created + timedelta(minutes=rng.randrange(60))))
        chosen: list[int] = []
        for _ in range(rng.randint(1, 4)):
            product = rng.randrange(n_products) + 1
            if product in chosen:
                continue
            chosen.append(product)
            reserved = created + timedelta(minutes=30) if status == "open" and rng.random() < 0.5 else None
            rows["cart_items"].append((cid, product, user, rng.randint(1, 3), reserved, created))
    return rows


# COPY column order per table, in load order (parents before children).
COLUMNS: dict[str, tuple[str, ...]] = {
    "categories": ("id", "name", "parent_id"),
    "users": ("id", "email", "full_name", "country", "created_at"),
    "products": ("id", "sku", "name", "category_id", "price", "stock", "created_at"),
    "orders": ("id", "user_id", "status", "total", "created_at"),
    "order_items": ("order_id", "order_created_at", "line_no", "product_id", "quantity", "unit_price"),
    "saga_steps": (
        "id",
        "order_id",
        "order_created_at",
        "step",
        "status",
        "attempts",
        "next_attempt_at",
        "updated_at",
    ),
    "carts": ("id", "user_id", "status", "created_at", "updated_at"),
    "cart_items": ("cart_id", "product_id", "user_id", "quantity", "reserved_until", "added_at"),
}
ALREADY_LOADED = "the sample tables already hold rows"
SEED_FRESH = "seed a freshly applied schema"
IDENTITY_TABLES = ("categories", "users", "products", "orders", "saga_steps", "carts")


def _copy(cur: psycopg.Cursor[Any], table: str, rows: Iterable[tuple[Any, ...]]) -> None:
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, COLUMNS[table]))
    )
    with cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def create_month_partitions(conn: psycopg.Connection[Any], first: date, last: date) -> list[str]:
    """Create `orders_pYYYY_MM` for every month from `first` through `last` that has none yet.

    Only for a freshly created, empty `orders` (the seed's own use): it uses plain `PARTITION OF`.
    Production tables get their partitions from `pgtool partitions`, which is lock-friendly and moves
    rows out of the DEFAULT partition.
    """
    created = []
    month = month_start(first)
    while month <= last:
        following = next_month(month)
        name = f"orders_p{month:%Y_%m}"
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
        if not (exists and exists[0]):
            conn.execute(
                sql.SQL("CREATE TABLE {} PARTITION OF orders FOR VALUES FROM ({}) TO ({})").format(
                    sql.Identifier(name),
                    sql.Literal(f"{month.isoformat()} 00:00:00+00"),
                    sql.Literal(f"{following.isoformat()} 00:00:00+00"),
                )
            )
            created.append(name)
        month = following
    return created


def refresh_views(conn: psycopg.Connection[Any]) -> None:
    """Populate or refresh the three reporting views (plain the first time, CONCURRENTLY afterwards)."""
    for view in SAMPLE_VIEWS:
        row = conn.execute(
            "SELECT ispopulated FROM pg_matviews WHERE matviewname = %s AND schemaname = current_schema()",
            (view,),
        ).fetchone()
        concurrently = sql.SQL("CONCURRENTLY ") if row and row[0] else sql.SQL("")
        conn.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}{}").format(concurrently, sql.Identifier(view)))


def seed(
    conn_or_dsn: psycopg.Connection[Any] | str,
    *,
    scale: float = 1.0,
    seed: int = 42,
    until: datetime | None = None,
    days: int = 180,
    partitions: bool = True,
    refresh: bool = True,
) -> SeedResult:
    """Load deterministic sample data into an applied, empty sample schema (see `apply_schema`).

    conn_or_dsn: a connection in autocommit mode, or a DSN to open one with.
    scale: size multiplier (1.0 = 10,000 orders; fractions allowed, e.g. 0.05 for quick tests).
    seed: the random seed; same (scale, seed, until, days) gives identical rows.
    until: the newest order time (default: now, UTC); orders span the `days` days before it.
    partitions: first create the monthly `orders_pYYYY_MM` partitions the orders fall in (else every
        order lands in `orders_default`, which is what a test of `pgtool partitions` may want).
    refresh: populate the three materialized views afterwards.
    Everything loads in one transaction, then the tables are ANALYZEd and identity sequences moved past
    the loaded ids. Raises OperationError if the tables already hold rows, UsageError for a bad size.
    """
    if isinstance(conn_or_dsn, str):
        from pgtool.pg.conn import connect

        with connect(conn_or_dsn) as conn:
            return seed_connection(
                conn, scale=scale, seed=seed, until=until, days=days, partitions=partitions, refresh=refresh
            )
    return seed_connection(
        conn_or_dsn, scale=scale, seed=seed, until=until, days=days, partitions=partitions, refresh=refresh
    )


def seed_connection(
    conn: psycopg.Connection[Any],
    *,
    scale: float,
    seed: int,
    until: datetime | None,
    days: int,
    partitions: bool,
    refresh: bool,
) -> SeedResult:
    from pgtool.sample.migrate import use_schema

    use_schema(conn)
    rows = generate(scale=scale, seed=seed, until=until, days=days)
    result = SeedResult(counts={table: len(r) for table, r in rows.items()})
    order_times = [r[-1] for r in rows["orders"]]
    result.first_order_at, result.last_order_at = min(order_times), max(order_times)
    try:
        with conn.transaction():
            busy = conn.execute("SELECT EXISTS (SELECT 1 FROM users) OR EXISTS (SELECT 1 FROM orders)")
            row = busy.fetchone()
            if row and row[0]:
                raise AlreadyExistsError(ALREADY_LOADED, hint=SEED_FRESH)
            if partitions:
                result.partitions = create_month_partitions(
                    conn, result.first_order_at.date(), result.last_order_at.date()
                )
            with conn.cursor() as cur:
                for table in COLUMNS:
                    _copy(cur, table, rows[table])
            for table in IDENTITY_TABLES:
                conn.execute(
                    sql.SQL(
                        "SELECT setval(pg_get_serial_sequence({}, 'id'), (SELECT max(id) FROM {}))"
                    ).format(sql.Literal(table), sql.Identifier(table))
                )
    except psycopg.errors.UniqueViolation as exc:
        # Rows the check above does not look for (categories, products, carts) or a seed running at the
        # same time: the same refusal, naming the key, not "apply the schema first".
        constraint = exc.diag.constraint_name or ""
        raise AlreadyExistsError(
            f"{ALREADY_LOADED} ({constraint or 'a unique key'} is taken)",
            constraint=constraint,
            hint=SEED_FRESH,
        ) from None
    except psycopg.Error as exc:
        detail = error_line(exc)
        raise OperationError(
            f"loading the sample data failed: {detail}", hint="apply the schema first (apply_schema)"
        ) from None
    conn.execute(sql.SQL("ANALYZE {}").format(sql.SQL(", ").join(map(sql.Identifier, COLUMNS))))
    if refresh:
        refresh_views(conn)
    return result
