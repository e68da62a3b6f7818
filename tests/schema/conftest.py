"""Fixtures for the schema-operations tests: the sample schema applied (and seeded) in a fresh database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from pgharness import Database
from pgtool import sample

# Seeded data ends here, so expectations do not move with the clock.
SEED_UNTIL = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def sample_db(database: Database) -> Database:
    """`database` with the sample schema applied and seeded at scale 0.05 (500 orders)."""
    with database.connect() as conn:
        sample.apply_schema(conn)
        sample.seed(conn, scale=0.05, seed=11, until=SEED_UNTIL, days=90)
    return database


# A dedicated cluster for tests that create roles (roles are cluster-wide: the shared session clusters
# must not get them). scram-sha-256 on TCP, trust on the private unix socket for the superuser.
BOOTSTRAP_HBA = [
    "local all all trust",
    "local replication all trust",
    "host all all 127.0.0.1/32 scram-sha-256",
    "host replication replicator 127.0.0.1/32 scram-sha-256",
]
BOOTSTRAP_SETTINGS = {
    "shared_preload_libraries": "pg_stat_statements,auto_explain",
    "password_encryption": "scram-sha-256",
    "log_statement": "all",
}


@pytest.fixture(scope="module", params=[15, 18], ids=["pg15", "pg18"])
def bootstrap_cluster(request: pytest.FixtureRequest) -> Any:
    import pgharness

    cluster = pgharness.start_cluster(request.param, settings=BOOTSTRAP_SETTINGS)
    try:
        cluster.set_hba(BOOTSTRAP_HBA)
        cluster.reload()
        yield cluster
    finally:
        cluster.cleanup()
