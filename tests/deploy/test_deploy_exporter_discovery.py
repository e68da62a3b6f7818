"""postgres_exporter run with the manifests' own args (primary and replica containers): database
auto-discovery makes "Largest tables" see every database, not only the DSN's `postgres`, server-wide
queries still come once, and every series carries the role the dashboard separates primary and replica by.
Debian's prometheus-postgres-exporter 0.11 (the manifests' version) against a real PostgreSQL 15."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from deploy_support import REPO, Process, find, scrape, tool, wait_http

from pgharness import retry


def exporter_container(rendered, deployment: str) -> dict[str, Any]:
    spec = find(rendered["overlays/prod"], "Deployment", deployment)["spec"]["template"]["spec"]
    return next(c for c in spec["containers"] if c["name"] == "postgres-exporter")


@pytest.fixture(scope="module")
def server() -> Iterator[dict[str, Any]]:
    from pgharness import rmtree, run_pgtool, server_writable_dir, start_cluster

    workdir = server_writable_dir("pgtool-discovery-")
    cluster = start_cluster(15, settings={"shared_preload_libraries": "pg_stat_statements,auto_explain"})
    try:
        with cluster.connect() as conn:
            conn.execute("CREATE DATABASE shop")
        with cluster.connect("shop") as conn:
            conn.execute("CREATE TABLE orders AS SELECT g AS id FROM generate_series(1, 20000) AS g")
        boot = run_pgtool(
            "bootstrap-extensions",
            "--dsn",
            cluster.dsn(),
            env={
                "PGTOOL_GRAFANA_READER_PASSWORD": "reader-secret",
                "PGTOOL_REPLICATOR_PASSWORD": "replicator-secret",
                "PGTOOL_PGBOUNCER_AUTH_PASSWORD": "auth-secret",
            },
        )
        assert boot.returncode == 0, boot.stderr[-2000:]
        yield {"cluster": cluster, "workdir": workdir}
    finally:
        cluster.cleanup()
        rmtree(workdir)


@pytest.mark.parametrize(("deployment", "role"), [("postgres", "primary"), ("postgres-replica", "replica")])
def test_exporter_args_discover_every_database(rendered, server, deployment: str, role: str) -> None:
    from pgtool.pg.cluster import free_port

    cluster = server["cluster"]
    container = exporter_container(rendered, deployment)
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["DATA_SOURCE_URI"].startswith("localhost:5432/postgres?")
    port = free_port()
    args = []
    for arg in container["args"]:
        if arg.startswith("--extend.query-path="):
            arg = f"--extend.query-path={REPO / 'exporter/queries.yaml'}"
        elif arg.startswith("--web.listen-address="):
            arg = f"--web.listen-address=127.0.0.1:{port}"
        args.append(arg)
    assert "--auto-discover-databases" in args
    proc = Process(
        [tool("prometheus-postgres-exporter"), *args],
        env={
            "PATH": "/usr/bin:/bin",
            "DATA_SOURCE_URI": env["DATA_SOURCE_URI"].replace("localhost:5432", f"127.0.0.1:{cluster.port}"),
            "DATA_SOURCE_USER": env["DATA_SOURCE_USER"],
            "DATA_SOURCE_PASS": "reader-secret",
        },
        log=server["workdir"] / f"{deployment}-exporter.log",
    )
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        wait_http(url, proc)
        samples = retry(lambda: (s := scrape(url)).get("pg_table_total_bytes") and s)
        tables = {(lab["datname"], lab["relname"]) for lab, _ in samples["pg_table_total_bytes"]}
        assert ("shop", "orders") in tables  # not only the DSN's database
        assert not {db for db, _ in tables} & {"template0", "template1"}
        # server-wide series once, not once per discovered database
        settings = samples["pg_settings_max_connections"]
        assert len(settings) == 1, settings
        # every series says which server it is
        for name in ("pg_table_total_bytes", "pg_settings_max_connections", "pg_up"):
            assert all(lab.get("role") == role for lab, _ in samples[name]), name
        duplicates = [
            k
            for k, n in Counter(
                (lab["datname"], lab["schemaname"], lab["relname"])
                for lab, _ in samples["pg_table_total_bytes"]
            ).items()
            if n > 1
        ]
        assert not duplicates
        assert "was collected before" not in proc.output()
    finally:
        proc.close()
