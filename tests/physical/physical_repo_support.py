"""An archiving primary whose archive_command writes into a backup repository (local, S3 or Azure)."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from repo_pitr_support import recover_from_repo

from pgharness import pgtool_argv, retry, rmtree, run_pgtool, start_cluster
from pgtool.pg.privileges import make_server_dir
from pgtool.repo import Repository
from repo_backends import Backend, make_backend


@dataclass
class RepoPrimary:
    cluster: Any
    backend: Backend
    spool: Path

    def dsn(self) -> str:
        return str(self.cluster.dsn("postgres"))

    def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.cluster.connect("postgres", pin="off") as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def repo(self) -> Repository:
        return self.backend.open(create=False)

    def switch_wal(self) -> str:
        """Close the current segment and wait until the archiver stored it; returns its name."""
        self.sql("CREATE TABLE IF NOT EXISTS filler (x int)")
        self.sql("INSERT INTO filler VALUES (1)")
        name = str(self.sql("SELECT pg_walfile_name(pg_switch_wal())")[0][0])

        def archived() -> bool:
            row = self.sql("SELECT last_archived_wal FROM pg_stat_archiver")[0]
            return row[0] is not None and row[0] >= name

        retry(archived, timeout=60)
        return name

    def pgtool(self, command: str, *args: str, env: dict[str, str] | None = None) -> Any:
        return run_pgtool(
            command, "--dsn", self.dsn(), "--repo", self.backend.url, *args, env=env or self.backend.env
        )

    def lose_the_machine(self) -> None:
        """Stop the server and remove its data directory: only the repository is left."""
        data_dir = self.cluster.data_dir
        self.cluster.stop()
        rmtree(data_dir)

    def recover(self, pgdata: Path, *args: str) -> Any:
        """recover --repo into `pgdata` (no --dsn: the server is gone)."""
        return recover_from_repo(self.backend, pgdata, *args)

    def basebackup(self, *args: str) -> Any:
        result = self.pgtool("basebackup", "--spool-dir", str(self.spool), *args)
        assert result.returncode == 0, result.stderr
        return result

    def status(self) -> tuple[dict[str, Any], list[str]]:
        """status --repo: the base_backups section's data and its problems."""
        result = self.pgtool("status", "--format", "json", "--k8s", "off")
        assert result.returncode in (0, 1), result.stderr
        report = json.loads(result.stdout)
        problems = [p["message"] for p in report["problems"] if p["area"] == "base_backups"]
        return report["sections"]["base_backups"], problems


def start_repo_primary(
    kind: str,
    request: pytest.FixtureRequest,
    work_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    major: int = 15,
    **settings: str,
) -> RepoPrimary:
    """`repo_primary_on` a repository of `kind` made for this test."""
    backend = make_backend(kind, request, work_dir)
    if kind == "local":  # the server user writes the WAL objects
        backend.url = str(make_server_dir(work_dir / "repo", 0o777))
    return repo_primary_on(backend, work_dir, monkeypatch, major, **settings)


def repo_primary_on(
    backend: Backend, work_dir: Path, monkeypatch: pytest.MonkeyPatch, major: int = 15, **settings: str
) -> RepoPrimary:
    """A PostgreSQL `major` primary (with extra server `settings`) archiving with
    `pgtool archive-wal %p %f --repo URL` into `backend`, its credentials in the server's environment
    (as a Secret would set them) and no repository key (the repository is not encrypted)."""
    for key, value in backend.env.items():
        if key.startswith(("AWS_", "AZURE_")):
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("PGTOOL_REPO_KEY_FILE", raising=False)
    exe = shlex.quote(pgtool_argv()[0])
    command = f"{exe} archive-wal %p %f --repo {shlex.quote(backend.url)}"
    base = {"archive_mode": "on", "archive_command": command, "wal_level": "replica"}
    cluster = start_cluster(major, settings={**base, **settings})
    spool = work_dir / "spool"
    spool.mkdir()
    return RepoPrimary(cluster=cluster, backend=backend, spool=spool)
