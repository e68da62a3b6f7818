"""manifests/: rendered by kustomize, validated against Kubernetes schemas in strict mode, and held to the
deployment contract (issue 8)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from deploy_support import MANIFESTS, OVERLAYS, REPO, find, tool

from pgtool.cli.commands import COMMANDS

# The oldest Kubernetes the manifests support (CronJob timeZone is GA since 1.27) and the newest schemas.
K8S_VERSIONS = ("1.27.0", kubernetes_validate.latest_version())
SECRET_WORDS = re.compile(r"pass(word)?|secret|token", re.IGNORECASE)


def all_objects(rendered: dict[str, list[dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    return [(target, obj) for target, objs in rendered.items() for obj in objs]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if obj["kind"] in ("Deployment", "Job"):
        return obj["spec"]["template"]["spec"]
    return None


def test_kubernetes_validate_is_strict() -> None:
    """Guard for the tests below: strict mode rejects an unknown field."""
    bad = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {}, "bogus": 1}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_rendered_objects_validate_strictly(rendered: dict[str, list[dict[str, Any]]], version: str) -> None:
    for target, obj in all_objects(rendered):
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{target}: {obj['kind']}/{obj['metadata']['name']} (k8s {version}): {exc.message}")


def base_resource_files() -> list[Path]:
    """The base's resources, and the tools applied by hand (runbooks' restore shell)."""
    kustomization = yaml.safe_load((MANIFESTS / "base/kustomization.yaml").read_text())
    return [MANIFESTS / "base" / name for name in kustomization["resources"]] + sorted(
        (MANIFESTS / "tools").glob("*.yaml")
    )


@pytest.mark.parametrize("path", base_resource_files(), ids=lambda p: p.name)
def test_each_base_file_validates_strictly(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("target", OVERLAYS)
def test_every_file_is_referenced_by_its_kustomization(target: str) -> None:
    directory = MANIFESTS / target
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    referenced = {Path(r) for r in kustomization.get("resources", []) if not r.startswith("..")}
    referenced |= {Path(p["path"]) for p in kustomization.get("patches", []) if "path" in p}
    for generator in kustomization.get("configMapGenerator", []):
        referenced |= {Path(f.split("=")[-1]) for f in generator.get("files", [])}
    present = {p.relative_to(directory) for p in directory.rglob("*") if p.is_file()}
    present.discard(Path("kustomization.yaml"))
    assert present == referenced, f"unreferenced: {present - referenced}, missing: {referenced - present}"


def test_overlays_render_the_same_objects_as_base_less_what_qa_shares(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    def ids(target: str) -> set[tuple[str, str]]:
        return {(o["kind"], re.sub(r"-[a-z0-9]{10}$", "", o["metadata"]["name"])) for o in rendered[target]}

    # production's extras: the Job that gives QA's primary the shared pooler's password, and the backup
    # repository's settings and identity, which replace the backups and WAL-archive claims
    assert ids("overlays/prod") == ids("base") - {
        ("PersistentVolumeClaim", "postgres-backups"),
        ("PersistentVolumeClaim", "postgres-wal-archive"),
    } | {
        ("Job", "pgtool-bootstrap-qa-pooler"),
        ("ConfigMap", "pgtool-repo"),
        ("ServiceAccount", "pgtool-repo"),
    }
    shared = {
        ("Deployment", "pgbouncer"),
        ("PodDisruptionBudget", "pgbouncer"),
        ("ConfigMap", "pgbouncer-config"),
        ("ConfigMap", "pgbouncer-exporter"),
        ("Deployment", "postgres-replica"),
        ("PersistentVolumeClaim", "postgres-replica-data"),
    }
    assert ids("overlays/qa") == ids("base") - shared
    assert {o["metadata"].get("namespace") for o in rendered["overlays/prod"]} == {"db-prod"}
    assert {o["metadata"].get("namespace") for o in rendered["overlays/qa"]} == {"db-qa"}


def test_qa_points_at_the_prod_pooler_and_replica(rendered: dict[str, list[dict[str, Any]]]) -> None:
    qa = rendered["overlays/qa"]
    for name, port in (("pgbouncer", 6432), ("postgres-replica", 5432)):
        spec = find(qa, "Service", name)["spec"]
        assert spec["type"] == "ExternalName"
        assert spec["externalName"] == f"{name}.db-prod.svc.cluster.local"
        assert "selector" not in spec and spec["ports"][0]["port"] == port
    url = find(qa, "ConfigMap", "shop-api-db")["data"]["DATABASE_URL"]
    assert url.startswith("postgresql://shop_api@pgbouncer:6432/shop_qa")
    # QA's pgtool runs push elsewhere: the same job names would overwrite production's results.
    pushgateways = {
        target: find(rendered[target], "ConfigMap", "pgtool-env")["data"]["PGTOOL_PUSHGATEWAY_URL"]
        for target in ("overlays/prod", "overlays/qa")
    }
    assert pushgateways["overlays/prod"] != pushgateways["overlays/qa"]
    # ... and the prod pooler routes that pool to QA's primary.
    ini = find(rendered["overlays/prod"], "ConfigMap", "pgbouncer-config")["data"]["databases.ini"]
    assert "shop_qa = host=postgres.db-qa.svc.cluster.local port=5432 dbname=shop" in ini


def test_postgres_deployment_contract(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objs = rendered["overlays/prod"]
    deployment = find(objs, "Deployment", "postgres")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    spec = deployment["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] == 90
    postgres = next(c for c in spec["containers"] if c["name"] == "postgres")
    pre_stop = postgres["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[:4] == ["pg_ctl", "stop", "-m", "fast"]
    assert postgres["args"] == ["-c", "config_file=/etc/postgresql/postgresql.conf"]
    # WAL goes to the backup repository in prod (test_deploy_repository.py); the base archives to a volume
    mounts = {m["name"]: m["mountPath"] for m in postgres["volumeMounts"]}
    assert "wal-archive" not in mounts and mounts["repo-key"] == "/etc/pgtool-repo"
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in spec["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == {"data": "postgres-data"}
    base = find(rendered["base"], "Deployment", "postgres")["spec"]["template"]["spec"]
    base_claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in base["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert base_claims == {"data": "postgres-data", "wal-archive": "postgres-wal-archive"}
    assert find(objs, "PodDisruptionBudget", "postgres")["spec"]["maxUnavailable"] == 0
    assert find(objs, "PodDisruptionBudget", "pgbouncer")["spec"]["maxUnavailable"] == 1
    sizes = {
        name: find(rendered["base"], "PersistentVolumeClaim", name)["spec"]["resources"]["requests"][
            "storage"
        ]
        for name in ("postgres-data", "postgres-backups", "postgres-wal-archive")
    }
    assert len(set(sizes)) == 3  # backups on a claim of their own, apart from data
    assert (
        find(objs, "PersistentVolumeClaim", "postgres-data")["spec"]["resources"]["requests"]["storage"]
        == "500Gi"
    )
    assert find(objs, "Service", "postgres")["spec"]["ports"][0]["port"] == 5432


def test_postgres_settings_in_the_config_map(rendered: dict[str, list[dict[str, Any]]]) -> None:
    conf = find(rendered["base"], "ConfigMap", "postgres-config")["data"]["postgresql.conf"]
    settings = dict(re.findall(r"^([a-z_.]+)[ \t]*=[ \t]*(.+?)[ \t]*$", conf, re.MULTILINE))
    assert settings["shared_preload_libraries"] == "'pg_stat_statements,auto_explain'"
    assert settings["auto_explain.log_min_duration"] == "'500ms'"
    assert settings["auto_explain.log_analyze"] == "on"
    assert settings["auto_explain.log_timing"] == "off"
    assert settings["auto_explain.log_format"] == "'json'"
    assert settings["archive_mode"] == "on"
    assert settings["archive_command"] == (
        "'pgtool archive-wal %p %f --archive-dir /wal-archive --compress zstd'"  # docs/deployment.md, Sizing
    )
    assert settings["archive_timeout"] == "300"
    replica = find(rendered["base"], "ConfigMap", "postgres-config")["data"]["replica.conf"]
    assert "user=replicator" in replica and "pgtool restore-wal %f %p --archive-dir /wal-archive" in replica


def test_pgbouncer_settings(rendered: dict[str, list[dict[str, Any]]]) -> None:
    ini = find(rendered["base"], "ConfigMap", "pgbouncer-config")["data"]["pgbouncer.ini"]
    settings = dict(re.findall(r"^([a-z_]+)[ \t]*=[ \t]*(.*?)[ \t]*$", ini, re.MULTILINE))
    assert settings["pool_mode"] == "transaction"
    assert settings["max_client_conn"] == "1000"
    assert settings["default_pool_size"] == "20"
    assert settings["server_reset_query"] == "DISCARD ALL"
    assert settings["auth_user"] == "pgbouncer_auth"
    assert "pgbouncer.get_auth($1)" in settings["auth_query"]
    # The auth file holds pgbouncer_auth only, written at start from its Secret (no userlist of app users).
    deployment = find(rendered["base"], "Deployment", "pgbouncer")
    init = deployment["spec"]["template"]["spec"]["initContainers"][0]
    assert '"pgbouncer_auth"' in init["args"][0]
    assert init["env"][0]["valueFrom"]["secretKeyRef"]["name"] == "pgbouncer-auth"


def test_service_config_maps_have_pooled_and_direct_urls(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for name in ("shop-api-db", "shop-worker-db"):
        data = find(rendered["base"], "ConfigMap", name)["data"]
        assert re.match(r"postgresql://\w+@pgbouncer:6432/", data["DATABASE_URL"])
        assert re.match(r"postgresql://\w+@postgres:5432/", data["DATABASE_URL_DIRECT"])


EXPECTED_SCHEDULES = {
    "pgtool-backup": ("0 1 * * *", "backup"),
    "pgtool-basebackup": ("0 3 * * 0", "basebackup"),
    "pgtool-verify": ("0 5 * * *", "verify"),
    "pgtool-partitions": ("30 0 * * *", "partitions"),
    "pgtool-refresh-mv": ("*/15 * * * *", "refresh-mv"),
    "pgtool-auto-explain-canary": ("7 * * * *", None),
    "pgtool-verify-base": ("0 10 * * 0", "verify"),
    "pgtool-status": ("*/5 * * * *", "status"),  # the RPO gauges PgtoolRpoAboveObjective reads
}
# verify --base starts a throwaway server: it runs in the PostgreSQL image (server binaries plus pgtool).
SERVER_IMAGE_JOBS = {"pgtool-verify-base"}


def test_cronjobs(rendered: dict[str, list[dict[str, Any]]]) -> None:
    cronjobs = {o["metadata"]["name"]: o for o in rendered["base"] if o["kind"] == "CronJob"}
    assert set(cronjobs) == set(EXPECTED_SCHEDULES)
    commands = {name for name, _, _ in COMMANDS}
    for name, (schedule, command) in EXPECTED_SCHEDULES.items():
        spec = cronjobs[name]["spec"]
        assert spec["schedule"] == schedule and spec["timeZone"] == "Etc/UTC"
        assert spec["concurrencyPolicy"] == "Forbid"
        assert spec["successfulJobsHistoryLimit"] >= 1 and spec["failedJobsHistoryLimit"] >= 1
        container = spec["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        if name in SERVER_IMAGE_JOBS:
            assert container["image"].startswith("ghcr.io/example/pgtool-postgres:")
            assert container["command"] == ["pgtool"]  # that image's ENTRYPOINT starts PostgreSQL
            assert container["args"][0] == command and command in commands
        elif command is not None:
            assert container["image"].startswith("ghcr.io/example/pgtool:")
            assert "command" not in container  # the image's ENTRYPOINT is pgtool
            assert container["args"][0] == command and command in commands
        assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
    basebackup = cronjobs["pgtool-basebackup"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    env = {e["name"]: e for e in basebackup["containers"][0]["env"]}
    assert env["PGUSER"]["value"] == "replicator"
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "postgres-replicator"


def test_canary_is_slower_than_auto_explain_threshold(rendered: dict[str, list[dict[str, Any]]]) -> None:
    canary = find(rendered["base"], "CronJob", "pgtool-auto-explain-canary")
    container = canary["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    sql = container["args"][container["args"].index("--command") + 1]
    seconds = float(re.search(r"pg_sleep\(([0-9.]+)\)", sql).group(1))
    conf = find(rendered["base"], "ConfigMap", "postgres-config")["data"]["postgresql.conf"]
    threshold_ms = int(re.search(r"auto_explain.log_min_duration = '(\d+)ms'", conf).group(1))
    assert seconds * 1000 > threshold_ms


def test_bootstrap_job_is_an_install_hook(rendered: dict[str, list[dict[str, Any]]]) -> None:
    job = find(rendered["base"], "Job", "pgtool-bootstrap-extensions")
    annotations = job["metadata"]["annotations"]
    assert "post-install" in annotations["helm.sh/hook"]
    assert annotations["argocd.argoproj.io/hook"] == "PostSync"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["bootstrap-extensions"]


def test_partitions_are_provisioned_18_months_by_an_install_hook(rendered) -> None:
    """The current month and 17 after it, on install and every upgrade, after the bootstrap Job."""
    job = find(rendered["base"], "Job", "pgtool-partitions-provision")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "post-install,post-upgrade"
    assert int(annotations["helm.sh/hook-weight"]) > 0  # bootstrap (weight 0) first
    assert annotations["argocd.argoproj.io/hook"] == "PostSync"
    assert int(annotations["argocd.argoproj.io/sync-wave"]) > 0
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:3] == ["partitions", "--table", "public.orders"]
    assert int(args[args.index("--ahead") + 1]) == 17
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"  # until migrations made the table


def test_backup_jobs_run_as_the_server_user(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """Backups are written 0600: the jobs, the server pods and the restore shell share uid 999."""
    server = find(rendered["base"], "Deployment", "postgres")["spec"]["template"]["spec"]["securityContext"]
    shell = yaml.safe_load((MANIFESTS / "tools/restore-shell.yaml").read_text())["spec"]["securityContext"]
    for obj in rendered["base"]:
        if obj["kind"] == "CronJob":
            ctx = pod_spec(obj)["securityContext"]
            assert ctx["runAsUser"] == server["runAsUser"] == shell["runAsUser"], obj["metadata"]["name"]


def test_pods_run_as_non_root_with_resources(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for target, obj in all_objects(rendered):
        spec = pod_spec(obj)
        if spec is None:
            continue
        where = f"{target}: {obj['kind']}/{obj['metadata']['name']}"
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["runAsUser"] != 0, where
        assert spec["automountServiceAccountToken"] is False, where
        for container in spec.get("initContainers", []) + spec["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, where
            assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}, where
            assert container["resources"]["requests"], where
            assert container["resources"]["limits"]["memory"], where


def test_secrets_are_referenced_never_inlined(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for target, obj in all_objects(rendered):
        assert obj["kind"] != "Secret", f"{target}: a Secret in the manifests"
        text = yaml.safe_dump(obj)
        assert not re.search(r"password\s*=\s*[^\s'\"$]", text, re.IGNORECASE), f"{target}: {obj['metadata']}"
        assert not re.search(r"postgres(ql)?://[^@/\s]*:[^@/\s]*@", text), f"{target}: password in a URL"
        spec = pod_spec(obj)
        for container in (spec.get("initContainers", []) + spec["containers"]) if spec else []:
            for env in container.get("env", []):
                if SECRET_WORDS.search(env["name"]):
                    assert "value" not in env, f"{target}: {env['name']} inlined"
                    assert "secretKeyRef" in env["valueFrom"], f"{target}: {env['name']}"


COPIES = (
    ("exporter/queries.yaml", "queries.yaml"),
    ("exporter/pgbouncer_exporter.py", "pgbouncer_exporter.py"),
    ("logging/promtail.yaml", "promtail.yaml"),
)


def test_config_file_copies_are_up_to_date() -> None:
    for source, copy in COPIES:
        assert (MANIFESTS / "base/files" / copy).read_text() == (REPO / source).read_text(), (
            f"manifests/base/files/{copy} differs from {source}: run python scripts/deploy_gen.py"
        )


def test_yamllint() -> None:
    config = "{extends: default, rules: {line-length: {max: 120}, document-start: disable, truthy: disable}}"
    paths = [str(REPO / d) for d in ("manifests", "alerts", "exporter", "logging")]
    out = subprocess.run([tool("yamllint"), "-s", "-d", config, *paths], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfiles_pass_hadolint() -> None:
    dockerfiles = sorted(MANIFESTS.glob("images/*/Dockerfile"))
    assert len(dockerfiles) == 1
    for path in dockerfiles:
        out = subprocess.run([tool("hadolint"), str(path)], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
