"""The shared sample schema: migrations apply once, seed data is deterministic and lands where it should."""

from __future__ import annotations

from datetime import UTC, datetime

import pglast
import pytest
from schema_testlib import scalar

from pgharness import run_pgtool
from pgtool import sample


def test_generate_is_deterministic_and_seed_dependent():
    until = datetime(2026, 1, 31, tzinfo=UTC)
    first = sample.generate(scale=0.02, seed=5, until=until, days=30)
    again = sample.generate(scale=0.02, seed=5, until=until, days=30)
    other = sample.generate(scale=0.02, seed=6, until=until, days=30)
    assert first == again
    assert first["orders"] != other["orders"]
    assert all(until.replace(day=1) <= r[-1] <= until for r in first["orders"] if r[-1].month == 1)


def test_migrations_keep_concurrent_index_builds_alone():
    assert [m.version[:4] for m in sample.migrations() if m.concurrent] == [
        "0004",
        "0005",
        "0006",
        "0007",
        "0009",
        "0010",
        "0011",
    ]
    for migration in sample.migrations():
        if migration.concurrent:
            assert len(pglast.parse_sql(migration.sql)) == 1, migration.path.name


def test_apply_twice_then_seed(database):
    with database.connect() as conn:
        applied = sample.apply_schema(conn)
        assert applied == [m.version for m in sample.migrations()]
        assert sample.apply_schema(conn) == []
        result = sample.seed(conn, scale=0.02, seed=3, until=datetime(2026, 2, 10, tzinfo=UTC), days=60)
    assert scalar(database, "SELECT count(*) FROM orders") == result.counts["orders"] == 200
    assert scalar(database, "SELECT count(*) FROM orders_default") == 0
    assert set(result.partitions) == {"orders_p2025_12", "orders_p2026_01", "orders_p2026_02"}
    assert scalar(database, "SELECT relkind FROM pg_class WHERE relname = 'orders'") == "p"
    pk = scalar(
        database,
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = 'orders'::regclass AND contype = 'p'",
    )
    assert pk == "PRIMARY KEY (id, created_at)"
    low_stock = scalar(database, "SELECT pg_get_indexdef('products_low_stock_idx'::regclass)")
    assert "WHERE (stock < 10)" in low_stock
    assert "(user_id, reserved_until)" in scalar(
        database, "SELECT pg_get_indexdef('cart_items_user_reserved_idx'::regclass)"
    )
    for view in sample.SAMPLE_VIEWS:
        populated, unique = database.execute(
            "SELECT m.ispopulated, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = %s::regclass "
            "AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL) "
            "FROM pg_matviews m WHERE m.matviewname = %s",
            (view, view),
        )[0]
        assert populated and unique, view
    revenue = scalar(database, "SELECT sum(revenue) FROM mv_daily_revenue")
    direct = scalar(
        database, "SELECT sum(total) FROM orders WHERE status IN ('paid', 'shipped', 'delivered')"
    )
    assert revenue == direct
    # identity sequences continue after the loaded ids
    new_id = scalar(
        database, "INSERT INTO users (email, full_name, country) VALUES ('x@y', 'X', 'DE') RETURNING id"
    )
    assert new_id == result.counts["users"] + 1


def test_seed_refuses_a_loaded_schema(sample_db):
    from pgtool.errors import OperationError

    with sample_db.connect() as conn, pytest.raises(OperationError, match="already hold rows"):
        sample.seed(conn, scale=0.02)


@pytest.mark.parametrize("pg_version", ["15", "18"])
def test_sample_migrations_pass_pgtool_lint(pg_version):
    files = [str(p) for p in sample.migration_files()]
    assert len(files) == 11
    result = run_pgtool("lint", "--pg-version", pg_version, "--format", "json", *files)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.all_versions
def test_seed_over_rows_the_check_does_not_look_at_is_already_exists(database):
    # users and orders are empty, so only the unique key (23505) can notice the category already there;
    # it must read as "already loaded", not as "loading failed, apply the schema first".
    from pgtool.errors import AlreadyExistsError

    with database.connect() as conn:
        sample.apply_schema(conn)
        conn.execute("INSERT INTO categories (id, name) VALUES (1, 'left over')")
        with pytest.raises(AlreadyExistsError, match="already hold rows") as caught:
            sample.seed(conn, scale=0.02)
        assert caught.value.constraint.startswith("categories_")
        assert caught.value.hint == "seed a freshly applied schema"
        # nothing of the refused load stayed
        assert conn.execute("SELECT count(*) FROM products").fetchone()[0] == 0
