"""runbooks/postgres-recovery.md, executed: every plain ```bash block of each scenario (the ```bash
kubernetes blocks aside) runs, in order and in one shell, as the PostgreSQL server user against real
PostgreSQL clusters. Their WAL, base backups, dumps and global objects are in the backup repository as the
prod overlay keeps them: an encrypted repository (the key file as Secret pgtool-repo-key mounts it) in a
bucket on moto's S3 server, written by real `pgtool archive-wal`, `basebackup`, `backup --repo` runs. The
variables the restore shell would set point at the test's clusters, bucket and key."""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_recovery_support import (
    BOTH_LIBRARIES,
    PASSWORDS,
    PWNED,
    RUNBOOK,
    TENANT_DB,
    TENANT_OWNER,
    Listener,
    Production,
    S3Repository,
    adopt,
    blocks,
    cluster_facts,
    hostile_names,
    make_tenant,
    run_scenario,
)
from deploy_support import REPO, tool
from psycopg import sql

from pgharness import rmtree, server_writable_dir, start_cluster
from pgtool.pg.cluster import free_port
from pgtool.pg.conn import connect


def test_runbook_has_four_scenarios_with_commands() -> None:
    plain = blocks(kubernetes=False)
    assert sorted(plain) == [1, 2, 3, 4]
    assert all(plain.values())
    assert RUNBOOK.read_text().count("```bash kubernetes") >= 4  # the cluster steps are written down too
    text = {n: "".join(b) for n, b in plain.items()}
    assert "pgtool recover --repo" in text[1] and "--target-time" in text[4] and "--repo" in text[4]
    assert "pgtool fetch globals" in text[2] and "pg_restore --dbname=template1 --create --clean" in text[2]
    assert "pgtool fetch dump" in text[3] and "--create" in text[3]
    for n, body in text.items():  # the repository is the path: no volume of the old layout
        assert "$BACKUPS" not in body and "$ARCHIVE" not in body and "--archive-dir" not in body, n


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
    block = blocks(kubernetes=True)[1][0]
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


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = server_writable_dir("pgtool-recovery-")
    yield path
    rmtree(path)


@pytest.fixture
def repo(s3_server: Any, workdir: Path) -> S3Repository:
    return S3Repository(s3_server, workdir)


def client_env(cluster: Any) -> dict[str, str]:
    return {"PGHOST": str(cluster.socket_dir), "PGPORT": str(cluster.port), "PGUSER": "postgres"}


@pytest.mark.parametrize("major", [15, 18])
def test_scenario_1_fresh_volume_reset(major: int, workdir: Path, repo: S3Repository) -> None:
    prod = Production(major, repo)
    recovered = None
    try:
        prod.insert(1, 100)
        prod.basebackup()
        prod.insert(101, 200)  # after the base backup: only the archive has these
        prod.archive_everything()
        # The data volume is lost: stop the server, empty its data directory.
        data_dir = prod.cluster.data_dir
        env = {**repo.env, **client_env(prod.cluster), "PGDATA": str(data_dir)}
        prod.cluster.stop("immediate")
        rmtree(data_dir)
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


@pytest.mark.parametrize("major", [15, 18])
def test_scenario_2_full_restore_brings_everything_back(
    major: int, workdir: Path, repo: S3Repository
) -> None:
    """Issue 19 part 4 and finding 2 of issue 14: from the bucket, the globals then every database with
    `pg_restore --create`. The restored cluster equals the original in roles (attributes, settings,
    memberships), each database's owner, ACL (REVOKE CONNECT), settings (per database and per role in
    it), comment and connection limit, and every table's owner, grants and row count. No hostile name runs
    SQL or shell, sends a connection elsewhere, or comes back under another name; a database that exists
    on the new server (here the first hostile name, holding something else) is replaced by its dump."""
    listener = Listener()
    names = hostile_names(listener.port)
    prod = Production(major, repo)
    fresh = start_cluster(major, settings=BOTH_LIBRARIES)  # the empty server the image initialises
    Path(PWNED).unlink(missing_ok=True)
    try:
        prod.insert(1, 300)
        make_tenant(prod)
        for i, name in enumerate(names):
            with prod.cluster.connect() as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            with connect(prod.cluster.dsn(), dbname=name) as conn:
                conn.execute(
                    sql.SQL("CREATE TABLE public.t AS SELECT generate_series(1, {}) AS n").format(i + 1)
                )
        prod.bootstrap()  # the install hook ran after these databases were made, as in production
        prod.dump()  # every database, and the globals
        with fresh.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(names[0])))
        with connect(fresh.dsn(), dbname=names[0]) as conn:
            conn.execute("CREATE TABLE public.stray AS SELECT 1 AS x")
        scratch = workdir / "scratch"
        scratch.mkdir()
        scratch.chmod(0o777)
        env = {
            **repo.env,
            **client_env(fresh),
            "SCRATCH": str(scratch),
            "PGPASSWORD": "superuser-secret",  # exported in the restore shell: must reach no other host
            **PASSWORDS,
        }
        result = run_scenario(2, major, env, workdir)
        assert "restored shop" in result.stdout
        original, restored = cluster_facts(prod.cluster), cluster_facts(fresh)
        assert set(names) | {TENANT_DB, "shop", "postgres"} == {row[0] for row in restored["databases"]}
        for key in original:
            assert restored.get(key) == original[key], key
        assert restored.keys() == original.keys()
        # the facts compared above hold what the tenant database is about
        tenant = next(row for row in restored["databases"] if row[0] == TENANT_DB)
        assert tenant[1] == TENANT_OWNER and tenant[2] == 20 and tenant[6] == "tenant one: 'restricted'"
        assert not [acl for acl in tenant[4] if acl.startswith("-=")]  # PUBLIC: no CONNECT, no TEMPORARY
        assert "tenant_group=CONNECT/" + sql.Identifier(TENANT_OWNER).as_string(None) in tenant[4]
        assert any("work_mem=8MB" in s for s in tenant[7]) and any("lock_timeout=1s" in s for s in tenant[7])
        assert ("tenant_group", "tenant_app", True) in restored["members"]
        assert restored[f"tables of {TENANT_DB!r}"][0][4] == 42
        with connect(fresh.dsn(), dbname="shop") as conn:
            assert conn.execute("SELECT count(*), sum(id) FROM public.orders").fetchone() == (300, 45150)
            assert conn.execute(
                "SELECT pg_catalog.to_regprocedure('pgbouncer.get_auth(text)') IS NOT NULL"
            ).fetchone()[0]
        assert not [r for r in restored["roles"] if r[0] == "pwned_e"]
        assert not Path(PWNED).exists()
        assert listener.connections == 0
        assert not list(scratch.iterdir())  # every fetched file removed
    finally:
        listener.close()
        Path(PWNED).unlink(missing_ok=True)
        fresh.cleanup()
        prod.cluster.cleanup()


# Quotes, a backslash, %XX, a slash, a newline, psql variables and a conninfo where a name belongs.
HOSTILE_DB = "-q'u\"o\\te %41/x\n:'db' host=127.0.0.1 dbname=x"


@pytest.mark.parametrize("db", ["shop", HOSTILE_DB], ids=["shop", "hostile-name"])
def test_scenario_3_single_database(db: str, workdir: Path, repo: S3Repository) -> None:
    prod = Production(15, repo)
    try:
        if db != "shop":
            with prod.cluster.connect() as conn:
                conn.execute(sql.SQL("ALTER DATABASE shop RENAME TO {}").format(sql.Identifier(db)))
        with prod.cluster.connect() as conn:  # what only pg_restore --create brings back
            conn.execute(sql.SQL("ALTER DATABASE {} SET work_mem = '3MB'").format(sql.Identifier(db)))
            conn.execute(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(sql.Identifier(db)))
            conn.execute(sql.SQL("COMMENT ON DATABASE {} IS 'the shop'").format(sql.Identifier(db)))

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
        before = [r for r in cluster_facts(prod.cluster)["databases"] if r[0] == db]
        with connect(prod.cluster.dsn(), dbname=db) as conn:
            conn.execute("DELETE FROM public.orders WHERE id > 50")  # the bad migration
        prod.sql("other", "INSERT INTO public.keep VALUES (2)")  # untouched by the restore
        scratch = workdir / "scratch"
        scratch.mkdir()
        scratch.chmod(0o777)
        env = {**repo.env, **client_env(prod.cluster), "DB": db, "SCRATCH": str(scratch), **PASSWORDS}
        run_scenario(3, 15, env, workdir)
        assert count(db, "orders") == (100,)
        with prod.cluster.connect() as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(db + "_broken"))
            )
            names = {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}
        # owner, ACL (REVOKE CONNECT), settings and comment as dumped
        assert [r for r in cluster_facts(prod.cluster)["databases"] if r[0] == db] == before
        assert names == {"postgres", "template0", "template1", "other", db, db + "_broken"}
        assert count(db + "_broken", "orders") == (50,)
        assert prod.sql("other", "SELECT count(*) FROM public.keep") == [(2,)]
        assert not list(scratch.iterdir())
    finally:
        prod.cluster.cleanup()


@pytest.mark.parametrize("major", [15, 18])
def test_scenario_4_point_in_time(major: int, workdir: Path, repo: S3Repository) -> None:
    prod = Production(major, repo)
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
        objects_before = {o.name for o in repo.open().list("")}
        pitr = workdir / "pitr"
        socket = workdir / "s"
        socket.mkdir()
        socket.chmod(0o777)
        env = {
            **repo.env,
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
        # production was not touched and the copy archived nothing of its own into the repository
        assert prod.sql("shop", "SELECT count(*) FROM public.orders") == [(41,)]
        added = {o.name for o in repo.open().list("")} - objects_before
        assert not [n for n in added if ".history" in n], added  # the copy's new timeline stayed local
    finally:
        if recovered is not None:
            recovered.stop("immediate")
        prod.cluster.cleanup()
