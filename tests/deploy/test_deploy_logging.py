"""logging/promtail.yaml against PostgreSQL's real JSON logs: a server started with the manifests'
postgresql.conf (only paths, ports and memory adapted) runs the auto_explain canary CronJob's statement;
the pipeline's JSON fields, timestamp layout, match selector and regex are checked against the records it
wrote, and the plan's query_id against pg_stat_statements' queryid (what the dashboard links by).

No Promtail binary can be had from the package registries here, so the pipeline's expressions are
evaluated with Python's re and json; they use only syntax RE2 and Python share."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from deploy_support import REPO, find

from pgharness import retry

CONF_ADAPTED = {
    # environment-specific lines of manifests/base/files/postgresql.conf
    "listen_addresses": None,
    "port": None,
    "hba_file": None,
    "log_directory": None,
    "archive_command": "/bin/true",
    "shared_buffers": "128MB",
    "effective_cache_size": "512MB",
}


def manifest_settings(conf: str) -> dict[str, str]:
    settings = {}
    for key, value in re.findall(r"^([a-z_.]+)[ \t]*=[ \t]*(.+?)[ \t]*$", conf, re.MULTILINE):
        value = value[1:-1].replace("''", "'") if value.startswith("'") else value
        settings[key] = value
    return settings


def pipeline() -> dict[str, Any]:
    config = yaml.safe_load((REPO / "logging/promtail.yaml").read_text())
    (job,) = config["scrape_configs"]
    stages: dict[str, Any] = {}
    for stage in job["pipeline_stages"]:
        ((kind, body),) = stage.items()
        stages.setdefault(kind, body)
    return {"job": job, "stages": stages}


@pytest.fixture(scope="module", params=[15, 18], ids=["pg15", "pg18"])
def logged(request: pytest.FixtureRequest, rendered) -> Iterator[dict[str, Any]]:
    from pgharness import rmtree, server_writable_dir, start_cluster

    conf = find(rendered["base"], "ConfigMap", "postgres-config")["data"]["postgresql.conf"]
    settings = manifest_settings(conf)
    for key, value in CONF_ADAPTED.items():
        settings.pop(key, None)
        if value is not None:
            settings[key] = value
    logdir = server_writable_dir("pgtool-jsonlog-")
    settings["log_directory"] = str(logdir)
    cluster = start_cluster(request.param, settings=settings)
    try:
        canary = find(rendered["base"], "CronJob", "pgtool-auto-explain-canary")
        args = canary["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
        sql = args[args.index("--command") + 1]
        with cluster.connect() as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            conn.execute(sql)
            queryid = conn.execute(
                "SELECT queryid::text FROM pg_stat_statements WHERE query LIKE '%auto_explain canary%' "
                "AND query NOT LIKE '%pg_stat_statements%'"
            ).fetchone()[0]

        def plan_lines() -> list[str]:
            lines = [line for path in logdir.glob("*.json") for line in path.read_text().splitlines()]
            return lines if any("plan:" in line for line in lines) else []

        lines = retry(plan_lines, timeout=30)
        yield {"lines": lines, "queryid": queryid, "sql": sql, "settings": settings}
    finally:
        cluster.cleanup()
        rmtree(logdir)


def test_the_server_accepted_the_manifest_settings(logged: dict[str, Any]) -> None:
    # it started, logged JSON, and auto_explain logged a plan: the settings are real settings
    assert logged["settings"]["log_destination"] == "jsonlog"
    assert all(json.loads(line) for line in logged["lines"])


def test_json_stage_fields_exist_in_the_records(logged: dict[str, Any]) -> None:
    stages = pipeline()["stages"]
    records = [json.loads(line) for line in logged["lines"]]
    plan = next(r for r in records if r.get("message", "").startswith("duration:"))
    for field in stages["json"]["expressions"].values():
        assert field in plan, f"{field} not in the auto_explain record: {sorted(plan)}"
    assert all(f in stages["json"]["expressions"] for f in stages["labels"])
    layout = stages["timestamp"]["format"]
    assert layout == "2006-01-02 15:04:05.000 MST"
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [A-Z]+", r["timestamp"]) for r in records)


def test_plan_records_match_and_others_do_not(logged: dict[str, Any]) -> None:
    stages = pipeline()["stages"]
    selector = stages["match"]["selector"]
    line_filter = json.loads(re.search(r'\|~ ("(?:[^"\\]|\\.)*")', selector).group(1))
    assert (
        '{job="postgresql"}' in selector
        and pipeline()["job"]["static_configs"][0]["labels"]["job"] == "postgresql"
    )
    matching = [line for line in logged["lines"] if re.search(line_filter, line)]
    assert len(matching) == 1, matching
    record = json.loads(matching[0])
    regex_stage = next(s["regex"] for s in stages["match"]["stages"] if "regex" in s)
    found = re.search(regex_stage["expression"], record[regex_stage["source"]])
    assert found and float(found["duration_ms"]) >= 500
    plan = json.loads(record["message"].split("plan:", 1)[1])  # auto_explain.log_format = json
    assert "auto_explain canary" in plan["Query Text"]
    others = [line for line in logged["lines"] if line not in matching]
    assert others and not any(re.search(line_filter, line) for line in others)


def test_plans_are_keyed_by_the_dashboard_query_id(logged: dict[str, Any]) -> None:
    """The record's query_id (structured metadata in Loki) is pg_stat_statements' queryid."""
    stages = pipeline()["stages"]
    assert "query_id" in stages["structured_metadata"]
    plan = next(json.loads(line) for line in logged["lines"] if "plan:" in line)
    assert str(plan["query_id"]) == logged["queryid"]


def test_plan_counter_is_what_the_alert_reads() -> None:
    stages = pipeline()["stages"]["match"]["stages"]
    metrics = next(s["metrics"] for s in stages if "metrics" in s)
    counter = metrics["postgres_auto_explain_plans_total"]
    assert counter["type"] == "Counter" and counter["config"]["action"] == "inc"
    rules = (REPO / "alerts/rules.yaml").read_text()
    assert "promtail_custom_postgres_auto_explain_plans_total" in rules


def test_primary_and_replica_each_ship_their_logs(rendered) -> None:
    """Both PostgreSQL pods carry the same Promtail (config, args, the pod's logs volume); the role label
    tells their plans apart, so the replica's reporting plans are shipped and keyed like the primary's."""
    config = yaml.safe_load((REPO / "logging/promtail.yaml").read_text())
    (job,) = config["scrape_configs"]
    assert job["static_configs"][0]["labels"]["role"] == "${POSTGRES_ROLE}"
    shipped = {}
    for name in ("postgres", "postgres-replica"):
        spec = find(rendered["overlays/prod"], "Deployment", name)["spec"]["template"]["spec"]
        containers = {c["name"]: c for c in spec["containers"]}
        promtail = containers["promtail"]
        assert "-config.expand-env=true" in promtail["args"]
        mounts = {m["name"]: m for m in promtail["volumeMounts"]}
        server_mounts = {m["name"]: m["mountPath"] for m in containers["postgres"]["volumeMounts"]}
        assert mounts["logs"]["mountPath"] == server_mounts["logs"] == "/var/log/postgresql"
        assert mounts["logs"]["readOnly"] is True
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["promtail-config"]["configMap"]["name"].startswith("promtail-config")
        env = {e["name"]: e.get("value") for e in promtail["env"]}
        shipped[name] = (promtail["image"], env["POSTGRES_ROLE"])
        service = find(rendered["overlays/prod"], "Service", name)
        assert 9080 in [p["port"] for p in service["spec"]["ports"]]  # promtail_custom_* scraped
    assert shipped["postgres"][0] == shipped["postgres-replica"][0]
    assert {role for _, role in shipped.values()} == {"primary", "replica"}
