"""Repository backends for tests: a real store per kind (local directory, moto's S3 server, Azurite),
a fresh bucket or container per test. The fixtures that hand them out live in tests/conftest.py."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

import repo_servers
from pgtool.repo import Repository, open_repository

_names = itertools.count(1)
BACKEND_KINDS = ("local", "s3", "azure")


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

    def cli_env(self, **extra: str) -> dict[str, str]:
        """The environment for a pgtool subprocess using this repository (PGTOOL_REPO set)."""
        return {**self.env, "PGTOOL_REPO": self.url, **extra}


def make_backend(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if kind == "local":
        env = {k: v for k, v in os.environ.items() if k not in ("PGTOOL_REPO_KEY_FILE", "PGTOOL_REPO")}
        return Backend("local", str(tmp_path / "repo"), env)
    server: repo_servers.Server = request.getfixturevalue(f"{kind}_server")
    bucket = f"pgtool-test-{os.getpid()}-{next(_names)}"
    server.make_bucket(bucket)
    scheme = "s3" if kind == "s3" else "azure"
    return Backend(kind, f"{scheme}://{bucket}/some/prefix", server.env(), server)
