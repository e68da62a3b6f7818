"""Fixtures for the repository tests: a cloud store of the test's own (so it may stop it) and key files.
The shared stores and the `backend` fixtures are in tests/conftest.py (tests/repo_backends.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import repo_servers
from repo_backends import Backend


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
