"""Fixtures: real PostgreSQL 15 and 18 clusters, a fresh database per test.

- `pg_major`: the test's PostgreSQL major version; `cluster`: the session cluster of that version.
  Tests run on PostgreSQL 15 unless marked
  `@pytest.mark.all_versions` (15 and 18) or `@pytest.mark.pg_version(18)`.
- `database`: a fresh database on that cluster, dropped after the test.
- `pg15`, `pg18`: the session clusters themselves.
- `server_dir`: a scratch directory the server user can write (WAL archives, backups).
- `pushgateway`: a real Prometheus Pushgateway, wiped for each test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import repo_servers
from pgharness import (
    DEFAULT_MAJOR,
    SUPPORTED_MAJORS,
    ClusterPool,
    Database,
    Pushgateway,
    create_database,
    drop_database,
    rmtree,
    server_writable_dir,
)
from repo_backends import BACKEND_KINDS, Backend, make_backend


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # `cluster` and `database` depend on `pg_major`, so it is in the closure of any test using them; a
    # test may also ask for `pg_major` alone (to start clusters of its own on that version).
    if "pg_major" not in metafunc.fixturenames:
        return
    if metafunc.definition.get_closest_marker("all_versions"):
        majors = list(SUPPORTED_MAJORS)
    elif marker := metafunc.definition.get_closest_marker("pg_version"):
        majors = list(marker.args)
    else:
        majors = [DEFAULT_MAJOR]
    metafunc.parametrize("pg_major", majors, ids=[f"pg{m}" for m in majors], scope="session")


@pytest.fixture(scope="session")
def cluster_pool() -> Iterator[ClusterPool]:
    pool = ClusterPool()
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def cluster(cluster_pool: ClusterPool, pg_major: int) -> Any:
    return cluster_pool.get(pg_major)


@pytest.fixture(scope="session")
def pg15(cluster_pool: ClusterPool) -> Any:
    return cluster_pool.get(15)


@pytest.fixture(scope="session")
def pg18(cluster_pool: ClusterPool) -> Any:
    return cluster_pool.get(18)


@pytest.fixture
def database(cluster: Any) -> Iterator[Database]:
    db = create_database(cluster)
    yield db
    drop_database(db)


@pytest.fixture
def server_dir() -> Iterator[Path]:
    path = server_writable_dir()
    yield path
    rmtree(path)


@pytest.fixture(scope="session")
def pushgateway_server() -> Iterator[Pushgateway]:
    gateway = Pushgateway()
    yield gateway
    gateway.close()


@pytest.fixture
def pushgateway(pushgateway_server: Pushgateway) -> Pushgateway:
    """The session Pushgateway, emptied for this test."""
    pushgateway_server.wipe()
    return pushgateway_server


# Object storage: real servers speaking the real protocols (moto's S3 server, Azurite), one per session,
# and a fresh bucket or container per test. `backend` runs a test once per kind (tests/repo_backends.py).
@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[repo_servers.Server]:
    server = repo_servers.start_server("s3", tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def azure_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[repo_servers.Server]:
    server = repo_servers.start_server("azure", tmp_path_factory.mktemp("azurite"))
    yield server
    server.stop()


@pytest.fixture
def local_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return make_backend("local", request, tmp_path)


@pytest.fixture(params=BACKEND_KINDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return make_backend(request.param, request, tmp_path)
