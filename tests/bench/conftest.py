"""Bench fixtures: a seeded bench schema (tiny scale) on the session cluster, over TCP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pgharness import create_database, drop_database
from pgtool.bench.run import prepare_data
from pgtool.bench.target import Target, in_own_schema

TEST_SCALE = 0.05


def tcp_dsn(cluster: Any, dbname: str) -> str:
    return cluster.dsn(dbname, tcp=True)


@pytest.fixture(scope="module")
def bench_target(cluster: Any) -> Iterator[Target]:
    """A bench schema holding the sample data at a tiny scale, dropped after the module."""
    db = create_database(cluster, prefix="bench")
    try:
        with in_own_schema(tcp_dsn(cluster, db.name)) as target:
            with target.connect() as conn:
                prepare_data(conn, TEST_SCALE, 42)
            yield target
    finally:
        drop_database(db)
