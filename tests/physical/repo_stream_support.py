"""Helpers for the streamed `basebackup --repo` tests: bulky rows, pg_basebackup found and watched
mid-stream, and the rows a recovered copy holds."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from physical_support import adopt

from pgharness import pgtool_argv

ROWS_SQL = "SELECT count(*), sum(i), md5(string_agg(v, ',' ORDER BY i)) FROM t"


def fill(sql: Any, first: int, last: int) -> None:
    """Rows of random md5 text (stored uncompressed, and lz4 gains little on it): every 10000 rows
    make about 3 MB of backup, that streams for a while."""
    sql("CREATE TABLE IF NOT EXISTS t (i int PRIMARY KEY, v text)")
    sql("ALTER TABLE t ALTER COLUMN v SET STORAGE EXTERNAL")
    sql(
        "INSERT INTO t SELECT g, "
        + " || ".join(["md5(random()::text)"] * 8)
        + " FROM generate_series(%s::int, %s::int) g",
        (first, last),
    )


def children_named(pid: int, name: str) -> list[int]:
    """Processes called `name` whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        comm, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
        if comm == name and int(rest[1]) == pid:
            found.append(int(entry))
    return found


def written_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


def start_pgtool(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in ("PGTOOL_DSN", "DATABASE_URL")}
    full_env.update(env)
    return subprocess.Popen(
        [*pgtool_argv(), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
    )


def recovered(major: int, pgdata: Path) -> Any:
    """Start the recovered copy in `pgdata`, wait for promotion, return ROWS_SQL's row, stop it."""
    copy = adopt(major, pgdata)
    try:
        copy.start()
        copy.wait_until_ready(180, primary=True)
        with copy.connect(pin="off") as conn:
            return conn.execute(ROWS_SQL).fetchone()
    finally:
        copy.cleanup()


def start_stream_primary(
    kind: str, request: Any, work_dir: Path, monkeypatch: Any, major: int = 15, **settings: str
) -> Any:
    """`physical_repo_support.start_repo_primary` of any major, with extra server settings."""
    import shlex

    from physical_repo_support import RepoPrimary

    from pgharness import start_cluster
    from pgtool.pg.privileges import make_server_dir
    from repo_backends import make_backend

    backend = make_backend(kind, request, work_dir)
    if kind == "local":  # the server user writes the WAL objects
        backend.url = str(make_server_dir(work_dir / "repo", 0o777))
    for key, value in backend.env.items():
        if key.startswith(("AWS_", "AZURE_")):
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("PGTOOL_REPO_KEY_FILE", raising=False)
    command = f"{shlex.quote(pgtool_argv()[0])} archive-wal %p %f --repo {shlex.quote(backend.url)}"
    base = {"archive_mode": "on", "archive_command": command, "wal_level": "replica"}
    cluster = start_cluster(major, settings={**base, **settings})
    spool = work_dir / "spool"
    spool.mkdir()
    return RepoPrimary(cluster=cluster, backend=backend, spool=spool)
