"""Every metric an alert, an alert test or a dashboard panel names is produced by something real: the
postgres_exporter scrape with exporter/queries.yaml (PostgreSQL 15 and 18, primary and standby), a real
pgtool run pushed to a real Pushgateway, the PgBouncer exporter scraped against a real PgBouncer, or the
Promtail metrics stage of logging/promtail.yaml. The kubelet's volume metrics are the one exception: no
kubelet runs here, so their names are taken from the Kubernetes documentation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from deploy_support import REPO, alert_rules, dashboard_prom_exprs, metric_names, parse_exposition, scrape

# https://kubernetes.io/docs/reference/instrumentation/metrics/ (kubelet, stable since 1.x)
KUBELET_METRICS = {"kubelet_volume_stats_available_bytes", "kubelet_volume_stats_capacity_bytes"}


def promtail_metrics() -> set[str]:
    """Promtail exports each metrics-stage metric as promtail_custom_<name>."""
    config = yaml.safe_load((REPO / "logging/promtail.yaml").read_text())
    names: set[str] = set()

    def walk(stages: list[dict]) -> None:
        for stage in stages:
            for kind, body in stage.items():
                if kind == "metrics":
                    names.update(f"promtail_custom_{name}" for name in body)
                elif kind == "match":
                    walk(body.get("stages", []))

    for scrape_config in config["scrape_configs"]:
        walk(scrape_config["pipeline_stages"])
    return names


@pytest.fixture(scope="module")
def schema_job_pushes(pushgateway_server) -> set[str]:
    """What real `pgtool partitions` and `refresh-mv` runs push (the sample schema: partitioned orders,
    reporting materialized views); the shared pushed_samples covers backup, verify and basebackup."""
    from pgharness import rmtree, run_pgtool, server_writable_dir, start_cluster
    from pgtool import sample
    from pgtool.pg.conn import connect

    pushgateway_server.wipe()
    workdir = server_writable_dir("pgtool-schema-push-")
    cluster = start_cluster(15)
    try:
        with cluster.connect() as conn:
            conn.execute("CREATE DATABASE shop")
        with connect(cluster.dsn("shop")) as conn:
            sample.apply_schema(conn)
            sample.seed(conn, scale=0.01, seed=7)
        push = ("--pushgateway", pushgateway_server.url, "--dsn", cluster.dsn("shop"))
        for argv in (("partitions", "--table", "public.orders", "--ahead", "3"), ("refresh-mv", "--all")):
            result = run_pgtool(*argv, *push)
            assert result.returncode == 0, f"pgtool {argv[0]}: {result.stderr[-2000:]}"
        return set(parse_exposition(pushgateway_server.metrics_text()))
    finally:
        cluster.cleanup()
        rmtree(workdir)
        pushgateway_server.wipe()


@pytest.fixture(scope="module")
def status_pushes(pushgateway_server) -> set[str]:
    """What a real `pgtool status --push` pushes for a primary whose archive_command failed after archiving
    one segment (so the failure gauges are there too)."""
    import shlex

    from pgharness import pgtool_argv, retry, rmtree, run_pgtool, server_writable_dir, start_cluster
    from pgtool.pg.privileges import give_to_server

    pushgateway_server.wipe()
    workdir = server_writable_dir("pgtool-status-push-")
    archive = workdir / "wal"
    archive.mkdir()
    archive.chmod(0o777)
    give_to_server(archive)
    command = f"{shlex.quote(pgtool_argv()[0])} archive-wal %p %f --archive-dir {shlex.quote(str(archive))}"
    cluster = start_cluster(15, settings={"archive_mode": "on", "archive_command": command})
    try:
        with cluster.connect(autocommit=True) as conn:
            conn.execute("SELECT pg_switch_wal()")
            retry(lambda: conn.execute("SELECT archived_count FROM pg_stat_archiver").fetchone()[0] > 0)
            conn.execute("ALTER SYSTEM SET archive_command = 'false'")
            conn.execute("SELECT pg_reload_conf()")
            conn.execute("CREATE TABLE push_filler AS SELECT 1 AS x")
            conn.execute("SELECT pg_switch_wal()")
            retry(lambda: conn.execute("SELECT failed_count FROM pg_stat_archiver").fetchone()[0] > 0)
        result = run_pgtool(
            "status",
            "--dsn",
            cluster.dsn(),
            "--archive-dir",
            str(archive),
            "--k8s",
            "off",
            "--pushgateway",
            pushgateway_server.url,
            "--push",
        )
        assert result.returncode == 1, result.stdout + result.stderr  # archiving fails: a finding
        return {
            name
            for name, samples in parse_exposition(pushgateway_server.metrics_text()).items()
            if any(labels.get("job") == "pgtool-status" for labels, _ in samples)
        }
    finally:
        cluster.cleanup()
        rmtree(workdir)
        pushgateway_server.wipe()


@pytest.fixture(scope="module")
def drill_pushes(pushgateway_server) -> set[str]:
    from deploy_drill_push import base_drill_pushes

    return base_drill_pushes(pushgateway_server)


@pytest.fixture(scope="module")
def produced(
    exporter_runs, pushed_samples, schema_job_pushes, drill_pushes, status_pushes, pgbouncer_setup
) -> dict[str, set[str]]:
    pushes = (*pushed_samples, *schema_job_pushes, *drill_pushes, *status_pushes)
    return {
        "postgres_exporter": set().union(*(run.names() for run in exporter_runs.values())),
        "pgtool push": {name for name in pushes if name.startswith("pgtool_")},
        "pgbouncer exporter": set(scrape(pgbouncer_setup.exporter_url)),
        "promtail": promtail_metrics(),
        "kubelet (documented)": KUBELET_METRICS,
    }


def used_by_alerts() -> set[str]:
    return set().union(*(metric_names(rule["expr"]) for rule in alert_rules()))


def used_by_dashboards() -> set[str]:
    return set().union(*(metric_names(expr) for expr in dashboard_prom_exprs()))


def used_by_alert_tests() -> set[str]:
    names: set[str] = set()
    for path in sorted((REPO / "alerts/tests").glob("*.yaml")):
        for test in yaml.safe_load(path.read_text())["tests"]:
            for series in test.get("input_series", []):
                names |= metric_names(series["series"].split("{")[0])
    return names - {"up"}


def test_the_extraction_sees_the_names() -> None:
    assert {"pgtool_last_run_success", "pg_stat_archiver_failed_count"} <= used_by_alerts()
    assert "pg_statements_query_info" in used_by_dashboards()
    assert metric_names('rate(pg_a_total{job="pg_not_a_metric"}[5m]) / x:pg_b:rate5m') == {"pg_a_total"}


@pytest.mark.parametrize("where", ["alerts", "dashboards", "alert tests"])
def test_every_used_metric_is_produced(produced: dict[str, set[str]], where: str) -> None:
    used = {"alerts": used_by_alerts, "dashboards": used_by_dashboards, "alert tests": used_by_alert_tests}[
        where
    ]()
    known = set().union(*produced.values())
    assert used, where
    missing = sorted(used - known)
    assert not missing, f"{where} use metrics nothing produces: {missing}"


def test_pushed_pgtool_metrics_are_documented(pushed_samples) -> None:
    documented = set(re.findall(r"`(pgtool_[a-z_]+)`", (REPO / "docs/metrics.md").read_text()))
    pushed = {name for name in pushed_samples if name.startswith("pgtool_")}
    used = {n for n in used_by_alerts() | used_by_dashboards() if n.startswith("pgtool_")}
    assert used <= documented, sorted(used - documented)
    assert pushed <= documented, sorted(pushed - documented)
    jobs = {labels["job"] for labels, _ in pushed_samples["pgtool_last_run_success"]}
    assert {"pgtool-backup", "pgtool-verify", "pgtool-basebackup"} <= jobs


def test_status_pushes_the_rpo_and_they_are_documented(status_pushes) -> None:
    documented = set(re.findall(r"`(pgtool_[a-z_]+)`", (REPO / "docs/metrics.md").read_text()))
    assert {
        "pgtool_rpo_seconds",
        "pgtool_archive_backlog_bytes",
        "pgtool_archive_backlog_segments",
        "pgtool_archive_ready_files",
        "pgtool_archiver_failed_count",
        "pgtool_archiver_failing",
        "pgtool_archiver_last_failed_timestamp_seconds",
        "pgtool_last_run_success",
    } <= status_pushes
    ours = {name for name in status_pushes if name.startswith("pgtool_")}  # not the gateway's push_time_*
    assert ours <= documented, sorted(ours - documented)


def test_alert_test_files_cover_every_alert() -> None:
    """Each alert has a promtool case where it fires and one where it does not."""
    fired: set[str] = set()
    quiet: set[str] = set()
    for path in sorted(Path(REPO / "alerts/tests").glob("*.yaml")):
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
    alerts = {rule["alert"] for rule in alert_rules() if "alert" in rule}
    assert alerts - fired == set(), "never shown firing"
    assert alerts - quiet == set(), "never shown quiet"
