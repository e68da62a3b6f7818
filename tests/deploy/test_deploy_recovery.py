"""runbooks/postgres-recovery.md, executed: every plain ```bash block of each scenario (the ```bash
kubernetes blocks aside) runs, in order and in one shell, as the PostgreSQL server user against real
PostgreSQL clusters whose backups come from real `pgtool backup` / `pgtool basebackup` runs and whose WAL
is archived by `pgtool archive-wal`. The variables the restore shell would set point at the test's
clusters and directories."""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import REPO, server_pgtool, tool
from psycopg import sql

from pgharness import binaries_for, retry, rmtree, run_pgtool, server_writable_dir, start_cluster
from pgtool.pg.binaries import reachable_by_server
from pgtool.pg.cluster import LocalCluster, free_port
from pgtool.pg.conn import connect
from pgtool.pg.privileges import server_user

RUNBOOK = REPO / "runbooks/postgres-recovery.md"
PASSWORDS = {
    "PGTOOL_GRAFANA_READER_PASSWORD": "reader-secret",
    "PGTOOL_REPLICATOR_PASSWORD": "replicator-secret",
    "PGTOOL_PGBOUNCER_AUTH_PASSWORD": "auth-secret",
}
BOTH_LIBRARIES = {"shared_preload_libraries": "pg_stat_statements,auto_explain"}


def scenario_blocks() -> dict[int, list[str]]:
    """Scenario number -> its executable blocks (```bash), Kubernetes blocks (```bash kubernetes) left out."""
    scenarios: dict[int, list[str]] = {}
    current = None
    for match in re.finditer(
        r"^## (\d+)\. |^```bash( kubernetes)?\n(.*?)^```$", RUNBOOK.read_text(), re.MULTILINE | re.DOTALL
    ):
        if match.group(1):
            current = int(match.group(1))
            scenarios[current] = []
        elif current is not None and not match.group(2):
            scenarios[current].append(match.group(3))
    return scenarios


def test_runbook_has_four_scenarios_with_commands() -> None:
    blocks = scenario_blocks()
    assert sorted(blocks) == [1, 2, 3, 4]
    assert all(blocks.values())
    text = RUNBOOK.read_text()
    assert text.count("```bash kubernetes") >= 4  # the cluster steps are written down too
    assert "pgtool recover" in "".join(blocks[1]) and "--target-time" in "".join(blocks[4])
    assert "pg_restore" in "".join(blocks[2]) and "pg_restore" in "".join(blocks[3])


def kubernetes_blocks() -> dict[int, list[str]]:
    """Scenario number -> its ```bash kubernetes blocks."""
    scenarios: dict[int, list[str]] = {}
    current = None
    for match in re.finditer(
        r"^## (\d+)\. |^```bash kubernetes\n(.*?)^```$", RUNBOOK.read_text(), re.MULTILINE | re.DOTALL
    ):
        if match.group(1):
            current = int(match.group(1))
            scenarios[current] = []
        elif current is not None:
            scenarios[current].append(match.group(2))
    return scenarios


RECORDING_KUBECTL = """#!/bin/bash
{ printf '%q ' "$@"; echo; } >> "$KUBECTL_LOG"
"""


def test_scenario_1_never_starts_the_primary_on_the_fresh_volume(tmp_path: Path) -> None:
    """Issue 22 item 9. There is no Kubernetes cluster here, so scenario 1's first kubernetes block runs
    against a kubectl that records each call; every `apply -k` is rendered by the real kustomize. Replayed
    in order: once the data claim has been deleted and recreated, the primary Deployment never has a
    replica before `pgtool recover` (the next plain block) has filled the volume."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "kubectl").write_text(RECORDING_KUBECTL)
    (bindir / "kubectl").chmod(0o755)
    log = tmp_path / "kubectl.log"
    block = kubernetes_blocks()[1][0]
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "KUBECTL_LOG": str(log)}
    subprocess.run(["/bin/bash", "-euo", "pipefail", "-c", block], env=env, cwd=REPO, check=True)
    replicas, claim, shell = 1, "old", False
    for line in log.read_text().splitlines():
        argv = shlex.split(line)
        if argv[:2] == ["-n", "db-prod"]:
            argv = argv[2:]
        if argv[:2] == ["scale", "deploy/postgres"]:
            replicas = int(argv[2].removeprefix("--replicas="))
        elif argv[:3] == ["delete", "pvc", "postgres-data"]:
            claim = "deleted"
        elif argv[:2] == ["apply", "-k"]:
            rendered = subprocess.run(
                [tool("kubectl"), "kustomize", argv[2]], cwd=REPO, capture_output=True, text=True, check=True
            )
            for doc in yaml.safe_load_all(rendered.stdout):
                kind, name = doc["kind"], doc["metadata"]["name"]
                if (kind, name) == ("Deployment", "postgres"):
                    replicas = doc["spec"].get("replicas", 1)
                elif (kind, name) == ("PersistentVolumeClaim", "postgres-data") and claim == "deleted":
                    claim = "fresh"
        elif argv[:2] == ["apply", "-f"] and argv[2].endswith("restore-shell.yaml"):
            shell = True
        assert not (claim == "fresh" and replicas > 0), f"the primary starts on the empty volume at: {line}"
    assert (claim, replicas, shell) == ("fresh", 0, True)


def test_held_overlay_is_prod_with_the_primary_at_zero() -> None:
    """runbooks/kustomize/prod-primary-held differs from the prod overlay only in the primary's replicas."""

    def render(path: str) -> list[dict[str, Any]]:
        out = subprocess.run(
            [tool("kubectl"), "kustomize", path], cwd=REPO, capture_output=True, text=True, check=True
        )
        return [doc for doc in yaml.safe_load_all(out.stdout) if doc]

    prod = render("manifests/overlays/prod")
    held = render("runbooks/kustomize/prod-primary-held")
    for doc in prod:
        if (doc["kind"], doc["metadata"]["name"]) == ("Deployment", "postgres"):
            assert doc["spec"]["replicas"] == 1
            doc["spec"]["replicas"] = 0
    assert held == prod


def run_scenario(
    number: int, major: int, env: dict[str, str], workdir: Path
) -> subprocess.CompletedProcess[str]:
    """The scenario's blocks as one bash script (set -euo pipefail), as the server user."""
    script = workdir / f"scenario{number}.sh"
    script.write_text("set -euo pipefail\n" + "\n".join(scenario_blocks()[number]))
    script.chmod(0o755)
    bindir = str(reachable_by_server(binaries_for(major)).bindir)  # the venv's 18 may be out of reach
    path = f"{bindir}:{Path(server_pgtool()).parent}:/usr/bin:/bin"
    assignments = [f"{k}={v}" for k, v in {"PATH": path, "HOME": str(workdir), **env}.items()]
    user = server_user()
    prefix = ["runuser", "-u", user, "--"] if user else []
    result = subprocess.run(
        [*prefix, "/usr/bin/env", "-i", *assignments, "/bin/bash", str(script)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd="/",
    )
    assert result.returncode == 0, (
        f"scenario {number} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


def as_server_user(*args: str) -> None:
    """pgtool as the CronJobs run it: as the same user as the server (manifests: uid 999 everywhere), so
    the restore steps, run as that user too, can read what it wrote (pgtool writes backups 0600)."""
    user = server_user()
    prefix = ["runuser", "-u", user, "--"] if user else []
    pgtool = server_pgtool()  # the checkout may be out of the server user's reach
    result = subprocess.run([*prefix, pgtool, *args], capture_output=True, text=True, timeout=600, cwd="/")
    assert result.returncode == 0, f"pgtool {args[0]}: {result.stderr[-2000:]}"


class Production:
    """A 'production' cluster whose WAL goes to ARCHIVE through pgtool archive-wal, with a shop database."""

    def __init__(self, major: int, workdir: Path) -> None:
        self.workdir = workdir
        self.backups = workdir / "backups"
        self.archive = workdir / "wal-archive"
        for path in (self.backups, self.archive):
            path.mkdir()
            path.chmod(0o777)
        pgtool = Path(sys.executable).parent / "pgtool"
        self.cluster = start_cluster(
            major,
            settings={
                **BOTH_LIBRARIES,
                "archive_mode": "on",
                "archive_command": f"{pgtool} archive-wal %p %f --archive-dir {self.archive}",
                "archive_timeout": "60",
            },
        )
        boot = run_pgtool("bootstrap-extensions", "--dsn", self.cluster.dsn(), env=PASSWORDS)
        assert boot.returncode == 0, boot.stderr[-2000:]
        with self.cluster.connect() as conn:
            conn.execute("CREATE DATABASE shop")
        boot = run_pgtool(
            "bootstrap-extensions", "--dsn", self.cluster.dsn(), "--database", "shop", env=PASSWORDS
        )
        assert boot.returncode == 0, boot.stderr[-2000:]
        self.sql("shop", "CREATE TABLE public.orders (id int PRIMARY KEY, note text)")

    def sql(self, db: str, statement: str) -> list[tuple[Any, ...]]:
        with self.cluster.connect(db) as conn:
            cur = conn.execute(statement)
            return cur.fetchall() if cur.description else []

    def insert(self, first: int, last: int) -> None:
        self.sql(
            "shop",
            f"INSERT INTO public.orders SELECT g, 'order ' || g FROM generate_series({first}, {last}) g",
        )

    def basebackup(self) -> None:
        as_server_user("basebackup", "--dsn", self.cluster.dsn(), "--dest", str(self.backups / "base"))

    def dump(self, *databases: str) -> None:
        args = [f"--database={db}" for db in databases]
        as_server_user("backup", "--dsn", self.cluster.dsn(), "--dest", str(self.backups / "dumps"), *args)

    def archive_everything(self) -> None:
        """Switch WAL and wait until the switched segment is in the archive."""
        segment = self.sql("postgres", "SELECT pg_walfile_name(pg_switch_wal())")[0][0]
        retry(
            lambda: (self.archive / segment).exists() or list(self.archive.glob(segment + ".*")), timeout=120
        )


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = server_writable_dir("pgtool-recovery-")
    yield path
    rmtree(path)


def adopt(major: int, data_dir: Path, workdir: Path) -> LocalCluster:
    """Start a data directory the runbook left stopped, to look at what it holds."""
    base = workdir / f"adopt-{data_dir.name}"
    base.mkdir()
    os.chmod(base, 0o777)
    return LocalCluster(binaries_for(major), base, data_dir=data_dir).start()


@pytest.mark.parametrize("major", [15, 18])
def test_scenario_1_fresh_volume_reset(major: int, workdir: Path) -> None:
    prod = Production(major, workdir)
    recovered = None
    try:
        prod.insert(1, 100)
        prod.basebackup()
        prod.insert(101, 200)  # after the base backup: only the archive has these
        prod.archive_everything()
        # The data volume is lost: stop the server, empty its data directory.
        data_dir, socket_dir, port = prod.cluster.data_dir, prod.cluster.socket_dir, prod.cluster.port
        prod.cluster.stop("immediate")
        rmtree(data_dir)
        env = {
            "BACKUPS": str(prod.backups),
            "ARCHIVE": str(prod.archive),
            "PGDATA": str(data_dir),
            "PGHOST": str(socket_dir),
            "PGPORT": str(port),
            "PGUSER": "postgres",
        }
        run_scenario(1, major, env, workdir)
        auto = (data_dir / "postgresql.auto.conf").read_text()
        assert "archive_mode" not in auto and "restore_command" not in auto  # overrides dropped
        recovered = adopt(major, data_dir, workdir)
        with recovered.connect("shop") as conn:
            assert conn.execute("SELECT count(*), max(id) FROM public.orders").fetchone() == (200, 200)
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
    finally:
        if recovered is not None:
            recovered.stop("immediate")
        prod.cluster.cleanup()


def test_scenario_2_full_restore_from_dumps(workdir: Path) -> None:
    prod = Production(15, workdir)
    fresh = start_cluster(15, settings=BOTH_LIBRARIES)  # the empty server the image initialises
    try:
        prod.insert(1, 300)
        prod.sql("postgres", "CREATE DATABASE reports")
        prod.sql("reports", "CREATE TABLE public.daily AS SELECT g AS day FROM generate_series(1, 30) g")
        prod.dump()  # every database
        env = {
            "BACKUPS": str(prod.backups),
            "PGHOST": str(fresh.socket_dir),
            "PGPORT": str(fresh.port),
            "PGUSER": "postgres",
            **PASSWORDS,
        }
        result = run_scenario(2, 15, env, workdir)
        assert "restored shop" in result.stdout and "restored reports" in result.stdout
        with fresh.connect("shop") as conn:
            assert conn.execute("SELECT count(*), sum(id) FROM public.orders").fetchone() == (300, 45150)
            assert conn.execute(
                "SELECT pg_catalog.to_regprocedure('pgbouncer.get_auth(text)') IS NOT NULL"
            ).fetchone()[0]
        with fresh.connect("reports") as conn:
            assert conn.execute("SELECT count(*) FROM public.daily").fetchone() == (30,)
        with fresh.connect() as conn:
            roles = {r[0] for r in conn.execute("SELECT rolname FROM pg_roles").fetchall()}
        assert {"grafana_reader", "replicator", "pgbouncer_auth"} <= roles
    finally:
        fresh.cleanup()
        prod.cluster.cleanup()


class Listener:
    """A TCP port on 127.0.0.1 that records every connection made to it: the attacker's host."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


def hostile_names(port: int) -> list[str]:
    """Database names an attacker with CREATEDB could choose, each aimed at a way a shell loop can fail."""
    return [
        "q'uote\"d",
        "back\\slash",
        f"host=127.0.0.1 port={port} dbname=x",  # a conninfo string where a name is expected
        f"postgresql://127.0.0.1:{port}/x",
        "%41",  # pgtool backup stores it as %2541: it must come back as %41
        "a/b",
        "new\nline",
        "new\rline",  # beside new\nline: neither may be taken for the other
        "tab\tand\x7fdel",
        ".leading-dot",
        "trailing newline\n",
        "x'; CREATE ROLE pwned_e; --",
        f"\\! touch {PWNED}",  # a psql meta-command
        ":'db' :\"db\" :db",  # psql variable references
        "with space",
        "-leading-dash",
        f"$(touch {PWNED})",
    ]


PWNED = "/tmp/pgtool-recovery-pwned"


@pytest.mark.parametrize("major", [15, 18])
def test_scenario_2_hostile_database_names(major: int, workdir: Path) -> None:
    """Finding 2 of issue 14: no name runs SQL or shell, sends a connection elsewhere, or comes back
    under another name; an existing database (here the first name) is restored into, not recreated."""
    listener = Listener()
    names = hostile_names(listener.port)
    prod = Production(major, workdir)
    fresh = start_cluster(major, settings=BOTH_LIBRARIES)
    Path(PWNED).unlink(missing_ok=True)
    try:
        for i, name in enumerate(names):
            with prod.cluster.connect() as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            with connect(prod.cluster.dsn(), dbname=name) as conn:
                conn.execute(
                    sql.SQL("CREATE TABLE public.t AS SELECT generate_series(1, {}) AS n").format(i + 1)
                )
        with fresh.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(names[0])))
        prod.dump()
        env = {
            "BACKUPS": str(prod.backups),
            "PGHOST": str(fresh.socket_dir),
            "PGPORT": str(fresh.port),
            "PGUSER": "postgres",
            "PGPASSWORD": "superuser-secret",  # exported in the restore shell: must reach no other host
            **PASSWORDS,
        }
        run_scenario(2, major, env, workdir)
        with fresh.connect() as conn:
            databases = {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}
            roles = {r[0] for r in conn.execute("SELECT rolname FROM pg_roles").fetchall()}
        assert set(names) <= databases
        assert databases - set(names) == {"postgres", "shop", "template0", "template1"}
        for i, name in enumerate(names):
            with connect(fresh.dsn(), dbname=name) as conn:
                assert conn.execute("SELECT count(*) FROM public.t").fetchone() == (i + 1,), name
        assert "pwned_e" not in roles
        assert not Path(PWNED).exists()
        assert listener.connections == 0
    finally:
        listener.close()
        Path(PWNED).unlink(missing_ok=True)
        fresh.cleanup()
        prod.cluster.cleanup()


# Quotes, a backslash, %XX, a slash, a newline, psql variables and a conninfo where a name belongs.
HOSTILE_DB = "-q'u\"o\\te %41/x\n:'db' host=127.0.0.1 dbname=x"


@pytest.mark.parametrize("db", ["shop", HOSTILE_DB], ids=["shop", "hostile-name"])
def test_scenario_3_single_database(db: str, workdir: Path) -> None:
    prod = Production(15, workdir)
    try:
        if db != "shop":
            with prod.cluster.connect() as conn:
                conn.execute(sql.SQL("ALTER DATABASE shop RENAME TO {}").format(sql.Identifier(db)))

        def count(database: str, table: str) -> Any:
            with connect(prod.cluster.dsn(), dbname=database) as conn:
                return conn.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("public", table))
                ).fetchone()

        prod.sql("postgres", "CREATE DATABASE other")
        prod.sql("other", "CREATE TABLE public.keep AS SELECT 1 AS x")
        with connect(prod.cluster.dsn(), dbname=db) as conn:
            conn.execute("INSERT INTO public.orders SELECT g, 'order ' || g FROM generate_series(1, 100) g")
        prod.dump(db)
        with connect(prod.cluster.dsn(), dbname=db) as conn:
            conn.execute("DELETE FROM public.orders WHERE id > 50")  # the bad migration
        prod.sql("other", "INSERT INTO public.keep VALUES (2)")  # untouched by the restore
        env = {
            "BACKUPS": str(prod.backups),
            "DB": db,
            "PGHOST": str(prod.cluster.socket_dir),
            "PGPORT": str(prod.cluster.port),
            "PGUSER": "postgres",
            **PASSWORDS,
        }
        run_scenario(3, 15, env, workdir)
        assert count(db, "orders") == (100,)
        with prod.cluster.connect() as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(db + "_broken"))
            )
            names = {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}
        assert names == {"postgres", "template0", "template1", "other", db, db + "_broken"}
        assert count(db + "_broken", "orders") == (50,)
        assert prod.sql("other", "SELECT count(*) FROM public.keep") == [(2,)]
    finally:
        prod.cluster.cleanup()


@pytest.mark.parametrize("major", [15, 18])
def test_scenario_4_point_in_time(major: int, workdir: Path) -> None:
    prod = Production(major, workdir)
    recovered = None
    try:
        prod.insert(1, 100)
        prod.basebackup()
        prod.insert(101, 150)  # before the target, after the base backup
        time.sleep(1.1)
        target = prod.sql("postgres", "SELECT clock_timestamp()")[0][0].astimezone(UTC)
        time.sleep(1.1)
        prod.sql("shop", "DELETE FROM public.orders WHERE id <= 120")  # the mistake, after the target
        prod.insert(200, 210)
        prod.archive_everything()
        pitr = workdir / "pitr"
        socket = workdir / "s"
        socket.mkdir()
        socket.chmod(0o777)
        env = {
            "BACKUPS": str(prod.backups),
            "ARCHIVE": str(prod.archive),
            "TARGET_TIME": target.isoformat(),
            "PITR_PGDATA": str(pitr),
            "PITR_PORT": str(free_port()),
            "PITR_SOCKET": str(socket),
            "PGUSER": "postgres",
        }
        assert datetime.fromisoformat(env["TARGET_TIME"]).tzinfo is not None
        run_scenario(4, major, env, workdir)
        recovered = adopt(major, pitr, workdir)
        with recovered.connect("shop") as conn:
            assert conn.execute("SELECT count(*), min(id), max(id) FROM public.orders").fetchone() == (
                150,
                1,
                150,
            )
        # production was not touched and its archive got nothing from the copy
        assert prod.sql("shop", "SELECT count(*) FROM public.orders") == [(41,)]
    finally:
        if recovered is not None:
            recovered.stop("immediate")
        prod.cluster.cleanup()
