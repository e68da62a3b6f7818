"""Fixtures for the repository tests: one real store per backend (local directory, moto's S3 server,
Azurite), a fresh bucket or container per test, and key files."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import repo_servers

from pgtool.repo import Repository, open_repository

_names = itertools.count(1)


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


@dataclass
class Backend:
    """Where one test's repository lives: `url` and the environment a deployment would give pgtool."""

    kind: str
    url: str
    env: dict[str, str]
    server: repo_servers.Server | None = None

    def open(self, **kwargs: object) -> Repository:
        kwargs.setdefault("environ", self.env)
        kwargs.setdefault("create", True)
        return open_repository(self.url, **kwargs)  # type: ignore[arg-type]


def make_backend(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if kind == "local":
        env = {k: v for k, v in os.environ.items() if k != "PGTOOL_REPO_KEY_FILE"}
        return Backend("local", str(tmp_path / "repo"), env)
    server: repo_servers.Server = request.getfixturevalue(f"{kind}_server")
    bucket = f"pgtool-test-{os.getpid()}-{next(_names)}"
    server.make_bucket(bucket)
    scheme = "s3" if kind == "s3" else "azure"
    return Backend(kind, f"{scheme}://{bucket}/some/prefix", server.env(), server)


@pytest.fixture
def local_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return make_backend("local", request, tmp_path)


@pytest.fixture(params=["local", "s3", "azure"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return make_backend(request.param, request, tmp_path)


@pytest.fixture(params=["s3", "azure"])
def isolated_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A cloud backend whose server belongs to this test alone, so the test may stop it."""
    server = repo_servers.start_server(request.param, tmp_path / "server")
    bucket = "pgtool-isolated"
    server.make_bucket(bucket)
    scheme = "s3" if request.param == "s3" else "azure"
    yield Backend(request.param, f"{scheme}://{bucket}/p", server.env(), server)
    server.stop()


@pytest.fixture
def passphrase_file(tmp_path: Path) -> Path:
    path = tmp_path / "passphrase"
    path.write_bytes(b"correct horse battery staple\n")
    return path


@pytest.fixture
def random_key_file(tmp_path: Path) -> Path:
    path = tmp_path / "random.key"
    path.write_bytes(os.urandom(32))
    return path
