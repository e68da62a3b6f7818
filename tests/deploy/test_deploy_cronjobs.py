"""Every CronJob and the bootstrap Job of the manifests, run for real: the container's args (and command)
and its environment from the rendered manifests (ConfigMap pgtool-env plus the container's env), with only
the cluster address, the volume paths and the Pushgateway pointed at the test's; run as the server user as
the pods run them (uid 999), against a PostgreSQL 15 that carries the sample e-commerce schema. Each must
exit 0, and each pgtool command must push a successful run to a real Pushgateway."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from deploy_support import find, parse_exposition

from pgharness import binaries_for, rmtree, server_writable_dir, start_cluster
from pgtool.pg.privileges import server_user

PASSWORDS = {  # what the Secrets hold; the test cluster trusts local connections, roles must LOGIN
    "postgres-superuser": "superuser-secret",
    "postgres-replicator": "replicator-secret",
    "pgbouncer-auth": "auth-secret",
    "grafana-reader": "reader-secret",
}
# In run order: bootstrap first (roles), backup before verify and basebackup.
JOBS = [
    ("Job", "pgtool-bootstrap-extensions"),
    ("CronJob", "pgtool-backup"),
    ("CronJob", "pgtool-verify"),
    ("CronJob", "pgtool-basebackup"),
    ("CronJob", "pgtool-partitions"),
    ("CronJob", "pgtool-refresh-mv"),
    ("CronJob", "pgtool-auto-explain-canary"),
]


def container_of(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]
    (container,) = spec["template"]["spec"]["containers"]
    return container


@pytest.fixture(scope="module")
def environment(rendered, pushgateway_server) -> Iterator[dict[str, Any]]:
    from pgtool import sample
    from pgtool.pg.conn import connect

    pushgateway_server.wipe()
    workdir = server_writable_dir("pgtool-cronjobs-")
    for name in ("backups", "wal-archive"):
        (workdir / name).mkdir()
        (workdir / name).chmod(0o777)
    cluster = start_cluster(15, settings={"shared_preload_libraries": "pg_stat_statements,auto_explain"})
    try:
        with cluster.connect() as conn:
            conn.execute("CREATE DATABASE shop")
        with connect(cluster.dsn("shop")) as conn:
            sample.apply_schema(conn)
            sample.seed(conn, scale=0.01, seed=7)
        yield {
            "rendered": rendered,
            "cluster": cluster,
            "workdir": workdir,
            "pushgateway": pushgateway_server,
        }
    finally:
        cluster.cleanup()
        rmtree(workdir)
        pushgateway_server.wipe()


def run_job(environment: dict[str, Any], kind: str, name: str) -> subprocess.CompletedProcess[str]:
    rendered, cluster, workdir = environment["rendered"], environment["cluster"], environment["workdir"]
    obj = find(rendered["overlays/prod"], kind, name)
    container = container_of(obj)
    env = dict(find(rendered["overlays/prod"], "ConfigMap", "pgtool-env")["data"])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            env[item["name"]] = PASSWORDS[item["valueFrom"]["secretKeyRef"]["name"]]
    env.update(
        PGHOST=str(cluster.socket_dir),
        PGPORT=str(cluster.port),
        PGTOOL_PUSHGATEWAY_URL=environment["pushgateway"].url,
        PGTOOL_PG_BINDIR=str(binaries_for(15).bindir),
        PATH=f"{binaries_for(15).bindir}:{Path(sys.executable).parent}:/usr/bin:/bin",
        HOME=str(workdir),
    )
    mounts = {"/backups": str(workdir / "backups"), "/wal-archive": str(workdir / "wal-archive")}

    def local(arg: str) -> str:
        for path, replacement in mounts.items():
            if arg == path or arg.startswith(path + "/"):
                return replacement + arg[len(path) :]
        return arg

    argv = [*(container.get("command") or ["pgtool"]), *(local(a) for a in container["args"])]
    user = server_user()
    prefix = ["runuser", "-u", user, "--"] if user else []
    assignments = [f"{k}={v}" for k, v in env.items()]
    return subprocess.run(
        [*prefix, "/usr/bin/env", "-i", *assignments, *argv],
        capture_output=True,
        text=True,
        timeout=600,
        cwd="/",
    )


def test_every_job_is_covered(rendered) -> None:
    jobs = {
        (o["kind"], o["metadata"]["name"])
        for o in rendered["overlays/prod"]
        if o["kind"] in ("Job", "CronJob")
    }
    assert jobs == set(JOBS)


@pytest.mark.parametrize(("kind", "name"), JOBS, ids=[name for _, name in JOBS])
def test_job_runs(environment: dict[str, Any], kind: str, name: str) -> None:
    result = run_job(environment, kind, name)
    assert result.returncode == 0, f"{name}: {result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    args = container_of(find(environment["rendered"]["overlays/prod"], kind, name))["args"]
    if kind == "CronJob" and name != "pgtool-auto-explain-canary":
        pushed = parse_exposition(environment["pushgateway"].metrics_text())
        runs = {lab["job"]: v for lab, v in pushed["pgtool_last_run_success"]}
        assert runs[f"pgtool-{args[0]}"] == 1.0


def test_jobs_did_their_work(environment: dict[str, Any]) -> None:
    """After the runs above: dumps, a base backup, partitions ahead, a plan logged by the canary."""
    workdir, cluster = environment["workdir"], environment["cluster"]
    assert list((workdir / "backups/dumps/shop").glob("shop-*.dump"))
    assert [p for p in (workdir / "backups/base").iterdir() if p.is_dir()]
    with cluster.connect("shop") as conn:
        partitions = conn.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'public.orders'::regclass"
        ).fetchone()[0]
        assert partitions >= 4  # the current month, three ahead, and the DEFAULT
    with cluster.connect() as conn:
        canary = conn.execute(
            "SELECT calls FROM pg_stat_statements WHERE query LIKE '%auto_explain canary%'"
        ).fetchall()
    assert canary and canary[0][0] >= 1
