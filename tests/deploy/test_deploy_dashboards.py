"""dashboards/: the generated Grafana JSON is up to date, importable, has the panels the issue asks for,
its PromQL parses (promtool), and its SQL panels run as grafana_reader on real PostgreSQL 15 and 18."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from deploy_support import REPO, dashboard_prom_exprs, load_generator, tool

DASHBOARD = REPO / "dashboards/postgres-overview.json"


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def test_generated_files_are_up_to_date() -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts/deploy_gen.py"), "--check"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(DASHBOARD.read_text()) == load_generator().build_dashboard()


def test_importable_shape(dashboard: dict) -> None:
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    assert "id" not in dashboard  # importable into any Grafana
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v["query"] for v in dashboard["templating"]["list"] if v["type"] == "datasource"}
    assert variables == {
        "prometheus": "prometheus",
        "postgres_primary": "grafana-postgresql-datasource",
        "postgres_replica": "grafana-postgresql-datasource",
        "loki": "loki",
    }
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] in (
            "${prometheus}",
            "${postgres_primary}",
            "${postgres_replica}",
            "${loki}",
        ), panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0


def test_panels_the_issue_asks_for(dashboard: dict) -> None:
    titles = [p["title"] for p in dashboard["panels"]]
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows[0].startswith("Recoverability")
    first_row = [p for p in dashboard["panels"] if p["gridPos"]["y"] == 1]
    assert [p["title"] for p in first_row][:3] == ["Newest dump", "Newest base backup", "Last restore drill"]
    assert "Recoverability: RPO, verified recovery point, predicted RTO" in rows
    for wanted in ("RPO: last WAL archived", "Verified recovery point", "Predicted RTO (drill)"):
        assert wanted in titles, wanted
    assert "Drill history (1 = passed)" in titles
    for wanted in (
        "Backends per database",
        "Replay lag (time)",
        "Largest tables (with indexes and TOAST)",
        "Archived / failed per minute",
        "auto_explain plans",
    ):
        assert wanted in titles, wanted
    tables = [p for p in dashboard["panels"] if p["type"] == "table"]
    by_source = {(p["datasource"]["type"], "I/O" in p["title"]) for p in tables if "queryid" in json.dumps(p)}
    assert by_source >= {
        ("prometheus", False),
        ("prometheus", True),
        ("grafana-postgresql-datasource", False),
        ("grafana-postgresql-datasource", True),
    }
    # the slow-query tables link each queryid to its auto_explain plans in Loki
    for panel in tables:
        if "queryid" in json.dumps(panel["targets"]) and "Dumps" not in panel["title"]:
            links = panel["fieldConfig"]["overrides"][0]["properties"][0]["value"]
            assert 'query_id=\\"${__data.fields.queryid}\\"' in links[0]["url"]


def test_promql_parses(tmp_path: Path) -> None:
    """Every Prometheus expression, wrapped as a recording rule, passes `promtool check rules`."""
    exprs = dashboard_prom_exprs()
    assert len(exprs) > 15
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"dashboard:expr{i}", "expr": expr} for i, expr in enumerate(exprs)],
            }
        ]
    }
    path = tmp_path / "dashboard-exprs.yaml"
    path.write_text(yaml.safe_dump(rules))
    out = subprocess.run([tool("promtool"), "check", "rules", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("major", [15, 18])
def test_sql_panels_run_as_grafana_reader(exporter_runs: dict, major: int) -> None:
    results = exporter_runs[major].sql
    assert set(results) == {
        f"{label}: {kind} (since reset)"
        for label in ("Primary (OLTP)", "Replica (reporting)")
        for kind in ("slowest by mean time", "most I/O")
    }
    slow = results["Primary (OLTP): slowest by mean time (since reset)"]
    assert slow and any("pg_sleep" in row[-1] for row in slow)  # query text visible to grafana_reader
    io = results["Primary (OLTP): most I/O (since reset)"]
    assert any("deploy_orders" in row[-1] for row in io)


@pytest.mark.parametrize("major", [15, 18])
def test_expressions_evaluate_in_a_real_prometheus(exporter_runs: dict, major: int) -> None:
    """Prometheus 2.42 scraping the real exporters (primary and standby) evaluates every alert and
    dashboard expression without error (a many-to-many join on the info series would fail here), and the
    ones over gauges that exist right away return series."""
    answers = exporter_runs[major].promql
    errors = {expr: a.get("error") for expr, a in answers.items() if a["status"] != "success"}
    assert not errors, errors
    assert len(answers) > 30

    def series(expr: str) -> list:
        return next(a["data"]["result"] for e, a in answers.items() if e == expr)

    expected_data = [
        "topk(15, max by (datname, schemaname, relname) (pg_table_total_bytes))",
        "sum by (datname) (pg_stat_database_numbackends)",
        "max by (instance) (pg_wal_archive_ready_count)",
        "max by (application_name) (pg_replication_standby_replay_lag_bytes)",
        "max by (instance) (pg_wal_receiver_streaming)",
    ]
    for expr in expected_data:
        assert series(expr), expr


def test_each_statement_panel_reads_the_server_it_names(dashboard: dict) -> None:
    """Issue 22: the SQL panels read the replica while claiming the OLTP statements. Every statements
    panel names its server in the title, reads that server's data source (SQL) or role (PromQL), and
    links to that server's plans."""
    statements = [p for p in dashboard["panels"] if p["type"] == "table" and "queryid" in json.dumps(p)]
    statements = [p for p in statements if "Dumps" not in p["title"]]
    assert len(statements) == 8  # 2 servers x (slowest, I/O) x (Prometheus, SQL)
    for panel in statements:
        role = "primary" if panel["title"].startswith("Primary (OLTP): ") else "replica"
        assert panel["title"].startswith(("Primary (OLTP): ", "Replica (reporting): ")), panel["title"]
        for target in panel["targets"]:
            if "rawSql" in target:
                assert target["datasource"]["uid"] == panel["datasource"]["uid"] == f"${{postgres_{role}}}"
            else:
                exprs = re.findall(r"pg_statements_\w+(\{[^}]*\})?", target["expr"])
                assert exprs and all(sel == f'{{role="{role}"}}' for sel in exprs), target["expr"]
        url = panel["fieldConfig"]["overrides"][0]["properties"][0]["value"][0]["url"]
        assert f'role=\\"{role}\\"' in url


def test_exporters_carry_the_role_the_panels_select(rendered) -> None:
    from deploy_support import find

    for deployment, role in (("postgres", "primary"), ("postgres-replica", "replica")):
        spec = find(rendered["overlays/prod"], "Deployment", deployment)["spec"]["template"]["spec"]
        exporter = next(c for c in spec["containers"] if c["name"] == "postgres-exporter")
        assert f"--constantLabels=role={role}" in exporter["args"]
        promtail = next(c for c in spec["containers"] if c["name"] == "promtail")
        assert {"name": "POSTGRES_ROLE", "value": role} in promtail["env"]
