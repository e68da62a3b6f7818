"""The shared pooler logs in to QA's database by construction (issue 22 item 5), with two different
passwords in the two namespaces' pgbouncer-auth Secrets: a production and a QA primary (real PostgreSQL,
scram over TCP), each bootstrapped by its own overlay's rendered bootstrap Job, then the prod overlay's
pgtool-bootstrap-qa-pooler Job; PgBouncer started from the prod overlay's rendered config (only addresses
and paths rewritten) serves both `shop` (production) and `shop_qa` (QA) to application users."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from deploy_support import Process, find, rewrite, tool

from pgharness import retry

SECRETS = {  # the Secrets of each namespace: different passwords everywhere
    "overlays/prod": {
        "postgres-superuser": "prod-superuser",
        "postgres-replicator": "prod-replicator",
        "grafana-reader": "prod-reader",
        "pgbouncer-auth": "prod-pooler-auth",
        "postgres-superuser-qa": "qa-superuser",  # the one copy: QA's superuser, trusted to production
    },
    "overlays/qa": {
        "postgres-superuser": "qa-superuser",
        "postgres-replicator": "qa-replicator",
        "grafana-reader": "qa-reader",
        "pgbouncer-auth": "qa-pooler-auth",
    },
}
QA_HOST = "postgres.db-qa.svc.cluster.local"


def run_job(rendered, overlay: str, name: str, hosts: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """The Job's container as rendered: args, pgtool-env plus its env, Secrets from SECRETS[overlay];
    the Service names it connects to mapped to the test's servers."""
    container = find(rendered[overlay], "Job", name)["spec"]["template"]["spec"]["containers"][0]
    env = dict(find(rendered[overlay], "ConfigMap", "pgtool-env")["data"])
    for item in container.get("env", []):
        env[item["name"]] = item.get("value") or SECRETS[overlay][item["valueFrom"]["secretKeyRef"]["name"]]
    cluster = hosts[overlay][env["PGHOST"]]  # Service names resolve in the Job's own namespace
    env.update(PGHOST="127.0.0.1", PGPORT=str(cluster.port), PATH="/usr/bin:/bin")
    env.pop("PGTOOL_PUSHGATEWAY_URL", None)
    pgtool = str(Path(sys.executable).parent / "pgtool")
    return subprocess.run([pgtool, *container["args"]], env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def pooler(rendered) -> Iterator[dict[str, Any]]:
    from pgharness import rmtree, server_writable_dir, start_cluster
    from pgtool.pg.cluster import free_port
    from pgtool.pg.privileges import give_to_server

    workdir = server_writable_dir("pgtool-qa-pooler-")
    settings = {"shared_preload_libraries": "pg_stat_statements,auto_explain"}
    clusters: dict[str, Any] = {}
    procs: list[Process] = []
    try:
        for overlay, app_password in (("overlays/prod", "prod-app"), ("overlays/qa", "qa-app")):
            cluster = clusters[overlay] = start_cluster(15, settings=settings)
            cluster.set_hba(["local all all trust", "host all all 127.0.0.1/32 scram-sha-256"])
            cluster.reload()
            with cluster.connect() as conn:
                conn.execute("CREATE DATABASE shop")
                conn.execute(f"ALTER ROLE postgres PASSWORD '{SECRETS[overlay]['postgres-superuser']}'")
                conn.execute(f"CREATE ROLE shop_api LOGIN PASSWORD '{app_password}'")
        hosts = {
            "overlays/prod": {"postgres": clusters["overlays/prod"], QA_HOST: clusters["overlays/qa"]},
            "overlays/qa": {"postgres": clusters["overlays/qa"]},
        }
        # Each namespace's own install hook, then production's Job for the shared pooler's QA login.
        for overlay, job in (
            ("overlays/qa", "pgtool-bootstrap-extensions"),
            ("overlays/prod", "pgtool-bootstrap-extensions"),
            ("overlays/prod", "pgtool-bootstrap-qa-pooler"),
            ("overlays/qa", "pgtool-bootstrap-extensions"),  # an upgrade of QA keeps the shared password
        ):
            result = run_job(rendered, overlay, job, hosts)
            assert result.returncode == 0, f"{overlay} {job}: {result.stderr[-3000:]}"

        config_map = find(rendered["overlays/prod"], "ConfigMap", "pgbouncer-config")["data"]
        deployment = find(rendered["overlays/prod"], "Deployment", "pgbouncer")
        init = deployment["spec"]["template"]["spec"]["initContainers"][0]
        secret = init["env"][0]["valueFrom"]["secretKeyRef"]["name"]
        subprocess.run(
            ["/bin/sh", "-ec", init["args"][0].replace("/var/run/pgbouncer-auth", str(workdir))],
            env={"PATH": "/usr/bin:/bin", init["env"][0]["name"]: SECRETS["overlays/prod"][secret]},
            check=True,
        )
        qa_port, prod_port = clusters["overlays/qa"].port, clusters["overlays/prod"].port
        (workdir / "databases.ini").write_text(
            rewrite(
                config_map["databases.ini"],
                {
                    f"shop_qa = host={QA_HOST} port=5432 dbname=shop": (
                        f"shop_qa = host=127.0.0.1 port={qa_port} dbname=shop"
                    )
                },
            )
        )
        port = free_port()
        ini = workdir / "pgbouncer.ini"
        ini.write_text(
            rewrite(
                config_map["pgbouncer.ini"],
                {
                    "* = host=postgres port=5432": f"* = host=127.0.0.1 port={prod_port}",
                    "%include /etc/pgbouncer/databases.ini": f"%include {workdir}/databases.ini",
                    "listen_addr = 0.0.0.0": "listen_addr = 127.0.0.1",
                    "listen_port = 6432": f"listen_port = {port}",
                    "auth_file = /var/run/pgbouncer-auth/userlist.txt": (
                        f"auth_file = {workdir}/userlist.txt"
                    ),
                },
            )
        )
        for path in workdir.iterdir():
            give_to_server(path)
        run_as = clusters["overlays/prod"].run_as or "postgres"
        proc = Process(
            ["runuser", "-u", run_as, "--", tool("pgbouncer"), str(ini)], log=workdir / "pgbouncer.log"
        )
        procs.append(proc)

        def accepting() -> bool:
            assert proc.proc.poll() is None, proc.output()
            with psycopg.connect(
                f"host=127.0.0.1 port={port} dbname=pgbouncer user=pgbouncer_auth "
                f"password={SECRETS['overlays/prod']['pgbouncer-auth']}",
                autocommit=True,
                prepare_threshold=None,
            ):
                return True

        retry(accepting, timeout=30)
        yield {"port": port, "clusters": clusters, "proc": proc}
    finally:
        for proc in procs:
            proc.close()
        for cluster in clusters.values():
            cluster.cleanup()
        rmtree(workdir)


def test_qa_overlay_leaves_the_pooler_password_to_production(rendered) -> None:
    qa = find(rendered["overlays/qa"], "Job", "pgtool-bootstrap-extensions")
    env = {e["name"] for e in qa["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "PGTOOL_PGBOUNCER_AUTH_PASSWORD" not in env
    job = find(rendered["overlays/prod"], "Job", "pgtool-bootstrap-qa-pooler")
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    pooler = find(rendered["overlays/prod"], "Deployment", "pgbouncer")["spec"]["template"]["spec"]
    # the very Secret the pooler's auth file is written from
    assert (
        env["PGTOOL_PGBOUNCER_AUTH_PASSWORD"]["valueFrom"]["secretKeyRef"]
        == pooler["initContainers"][0]["env"][0]["valueFrom"]["secretKeyRef"]
    )
    assert env["PGHOST"]["value"] == QA_HOST


@pytest.mark.parametrize(
    ("dbname", "overlay", "password"),
    [("shop", "overlays/prod", "prod-app"), ("shop_qa", "overlays/qa", "qa-app")],
)
def test_the_shared_pooler_serves_both_databases(pooler, dbname: str, overlay: str, password: str) -> None:
    with psycopg.connect(
        f"host=127.0.0.1 port={pooler['port']} dbname={dbname} user=shop_api password={password}",
        autocommit=True,
        prepare_threshold=None,
    ) as conn:
        row = conn.execute("SELECT current_user, current_database(), inet_server_port()").fetchone()
    assert row == ("shop_api", "shop", pooler["clusters"][overlay].port)
