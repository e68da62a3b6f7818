"""Helpers for recover and the base drill over a repository: a primary archiving into it, base
backups uploaded into it, and damage done to its objects the way a store's bit rot would."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from physical_support import ArchivingPrimary

from pgharness import pgtool_argv, run_pgtool, start_cluster
from pgtool.pg.privileges import make_server_dir
from pgtool.physical import repo_catalog
from pgtool.physical.base_catalog import list_base_backups
from pgtool.repo import Repository, StoreUnavailable
from repo_backends import Backend, make_backend


def repo_backend(kind: str, request: pytest.FixtureRequest, work_dir: Path) -> Backend:
    """A repository of `kind`; a local one in a directory the server user can write."""
    if kind == "local":
        backend = make_backend("local", request, work_dir)
        make_server_dir(work_dir / "repo", 0o777)
        return backend
    return make_backend(kind, request, work_dir)


@dataclass
class RepoPrimary(ArchivingPrimary):
    backend: Backend | None = None

    @property
    def repo(self) -> Repository:
        assert self.backend is not None
        return self.backend.open(create=False)

    def basebackup_to_repo(self) -> str:
        """Take a base backup locally (pgtool basebackup --dest) and upload it; returns its stamp."""
        self.basebackup()
        newest = list_base_backups(self.base_dir)[-1]
        assert newest.path is not None
        repo_catalog.upload(self.repo, newest.path, newest.id)
        return newest.id


def start_repo_primary(
    major: int, work_dir: Path, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> RepoPrimary:
    """A cluster whose archive_command is `pgtool archive-wal %p %f --repo URL`, with the store's
    credentials in its environment (as a Secret would set them)."""
    for key, value in backend.env.items():
        if key.startswith(("AWS_", "AZURE_")):
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("PGTOOL_REPO_KEY_FILE", raising=False)
    exe = shlex.quote(pgtool_argv()[0])
    command = f"{exe} archive-wal %p %f --repo {shlex.quote(backend.url)}"
    cluster = start_cluster(
        major, settings={"archive_mode": "on", "archive_command": command, "wal_level": "replica"}
    )
    return RepoPrimary(
        cluster=cluster,
        archive_dir=work_dir / "no-archive-dir",
        base_dir=work_dir / "base",
        work_dir=work_dir,
        backend=backend,
    )


def rewrite_object(repo: Repository, name: str, change: Any) -> None:
    """Replace stored object `name` with change(its stored bytes), bypassing pgtool's framing. The read
    must be whole (the store checks the length it received): the damage is `change`'s and no more."""
    for attempt in range(3):  # a read cut short is the store's or the link's hiccup, not the damage
        try:
            stored = bytearray(b"".join(repo.store.get_stream(name)))
            break
        except StoreUnavailable:
            if attempt == 2:
                raise
    info = repo.store.head(name)
    assert info is not None and len(stored) == info.size, (name, len(stored), info)
    repo.store.delete(name)
    repo.store.create(name, bytes(change(stored)))


def flip_byte(stored: bytearray) -> bytearray:
    stored[len(stored) // 2] ^= 0x01
    return stored


def recover_from_repo(backend: Backend, pgdata: Path, *args: str) -> Any:
    return run_pgtool("recover", "--repo", backend.url, "--pgdata", str(pgdata), *args, env=backend.env)
