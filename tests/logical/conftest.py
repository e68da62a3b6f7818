"""Fixtures for logical backups and verify: databases with data on the session cluster, dump helpers."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pgharness import Database, create_database, drop_database


@pytest.fixture
def make_db(cluster: Any) -> Iterator[Callable[..., Database]]:
    """Factory: a fresh database on the session cluster holding `rows` rows in public.items (+ index)."""
    created: list[Database] = []

    def make(rows: int = 100, prefix: str = "lg") -> Database:
        db = create_database(cluster, prefix)
        created.append(db)
        db.execute("CREATE TABLE items (id int PRIMARY KEY, note text)")
        db.execute("INSERT INTO items SELECT g, 'note ' || g FROM generate_series(1, %s) g", [rows])
        return db

    yield make
    for db in created:
        drop_database(db)


@pytest.fixture
def login_role(cluster: Any) -> Iterator[str]:
    """A LOGIN role without superuser (trust auth), dropped afterwards (its databases must be gone)."""
    name = f"lg_role_{uuid.uuid4().hex[:8]}"
    with cluster.connect() as conn:
        conn.execute(f'CREATE ROLE "{name}" LOGIN')
    yield name
    with cluster.connect() as conn:
        conn.execute(f'DROP OWNED BY "{name}"')
        conn.execute(f'DROP ROLE IF EXISTS "{name}"')
