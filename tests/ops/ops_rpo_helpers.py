"""Helpers for the RPO tests: a primary archiving through `pgtool archive-wal` into a directory or a
repository, whose archive_command can be broken and mended while it runs."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgharness import (
    pgtool_argv,
    retry,
    rmtree,
    run_pgtool,
    server_writable_dir,
    set_archive_command,
    start_cluster,
)
from pgtool.pg.privileges import give_to_server, make_server_dir


@dataclass
class RpoPrimary:
    cluster: Any
    command: str  # the working archive_command
    where: list[str]  # status's arguments naming the archive: --archive-dir DIR or --repo URL
    env: dict[str, str] | None  # the store's credentials for pgtool's environment

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        with self.cluster.connect(autocommit=True) as conn:
            cur = conn.execute(query)
            return cur.fetchall() if cur.description else []

    def archiver(self) -> dict[str, Any]:
        row = self.sql("SELECT last_archived_wal, failed_count, last_failed_wal FROM pg_stat_archiver")[0]
        return {"last_archived_wal": row[0], "failed_count": row[1], "last_failed_wal": row[2]}

    def write(self, rows: int = 1000) -> None:
        self.sql("CREATE TABLE IF NOT EXISTS rpo_filler (x int)")
        self.sql(f"INSERT INTO rpo_filler SELECT generate_series(1, {int(rows)})")

    def switch(self) -> str:
        self.write()
        return str(self.sql("SELECT pg_walfile_name(pg_switch_wal())")[0][0])

    def switch_and_wait(self) -> str:
        name = self.switch()
        retry(lambda: (self.archiver()["last_archived_wal"] or "") >= name, timeout=60)
        return name

    def set_archive_command(self, command: str) -> None:
        set_archive_command(self.cluster, command)

    def status(self, *extra: str) -> tuple[int, dict[str, Any]]:
        proc = run_pgtool(
            "status",
            "--dsn",
            self.cluster.dsn(),
            *self.where,
            "--k8s",
            "off",
            "--format",
            "json",
            *extra,
            env=self.env,
        )
        assert proc.stdout, proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc.returncode, json.loads(proc.stdout)

    def text(self, *extra: str) -> tuple[int, str]:
        proc = run_pgtool(
            "status", "--dsn", self.cluster.dsn(), *self.where, "--k8s", "off", *extra, env=self.env
        )
        return proc.returncode, proc.stdout


@contextmanager
def rpo_primary(kind: str, backend: Any = None, monkeypatch: Any = None) -> Iterator[RpoPrimary]:
    """kind "dir": archive-wal --archive-dir; "repo": archive-wal --repo (backend: tests/repo_backends;
    its credentials go to the server's environment through monkeypatch, as a Secret would set them)."""
    root = server_writable_dir("pgtool-rpo-")
    env: dict[str, str] | None = None
    if kind == "dir":
        archive = root / "wal"
        archive.mkdir()
        archive.chmod(0o777)
        give_to_server(archive)
        target, where = f"--archive-dir {shlex.quote(str(archive))}", ["--archive-dir", str(archive)]
    else:
        if backend.kind == "local":  # the server user writes the WAL objects
            backend.url = str(make_server_dir(Path(root) / "repo", 0o777))
        env = backend.env
        for key, value in env.items():
            if key.startswith(("AWS_", "AZURE_")):
                monkeypatch.setenv(key, value)
        target, where = f"--repo {shlex.quote(backend.url)}", ["--repo", backend.url]
    command = f"{shlex.quote(pgtool_argv()[0])} archive-wal %p %f {target}"
    cluster = start_cluster(
        15, settings={"archive_mode": "on", "archive_command": command, "wal_level": "replica"}
    )
    try:
        yield RpoPrimary(cluster, command, where, env)
    finally:
        cluster.cleanup()
        rmtree(root)
