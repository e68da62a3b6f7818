"""The prod overlay keeps every backup in the backup repository (issue 17, docs/deployment.md, Backup
repository): the rendered objects, read the way Kubernetes and PostgreSQL read them. Base and QA keep the
local volumes. The jobs and the server config run for real in test_deploy_cronjobs.py and
test_deploy_postgres_config.py."""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate
import pytest
import yaml
from deploy_support import MANIFESTS, OVERLAYS, find

PROD = "overlays/prod"
# The commands that read or write backups, and the flags that name a local backup location.
REPO_COMMANDS = {"backup", "basebackup", "verify", "status", "recover", "archive-wal", "restore-wal", "demo"}
LOCAL_FLAGS = {"--dest", "--archive-dir", "--backup-dir", "--base-dir"}
KEY_SECRET = "pgtool-repo-key"
S3_SECRET = "pgtool-repo-s3"
EXAMPLE = MANIFESTS / "examples/repository-secrets.example.yaml"


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if obj["kind"] in ("Deployment", "Job"):
        return obj["spec"]["template"]["spec"]
    return None


def backup_containers(objs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(object name, pod spec, container) of each container that reads or writes backups: a pgtool
    command of REPO_COMMANDS, or a PostgreSQL server (archive_command, restore_command)."""
    found = []
    for obj in objs:
        spec = pod_spec(obj)
        for container in (spec or {}).get("containers", []):
            args = container.get("args") or []
            runs_pgtool = container.get("command") in (None, ["pgtool"]) and container["image"].startswith(
                ("ghcr.io/example/pgtool:", "ghcr.io/example/pgtool-postgres:")
            )
            server = "config_file=/etc/postgresql/postgresql.conf" in args or any(
                "replica.conf" in a for a in args
            )
            if server or (runs_pgtool and args and args[0] in REPO_COMMANDS):
                found.append((obj["metadata"]["name"], spec, container))
    return found


def container_env(objs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """The variables a container gets from its ConfigMaps (envFrom, as rendered) and plain env values."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(find(objs, "ConfigMap", source["configMapRef"]["name"])["data"])
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env


def effective(files: dict[str, str], name: str, setting: str) -> str | None:
    """The value PostgreSQL ends up with for `setting` reading `name` from the ConfigMap's directory:
    lines in order, include / include_if_exists followed in place, the last assignment wins."""
    value = None
    for line in files[name].splitlines():
        line = line.strip()
        include = re.fullmatch(r"(include|include_if_exists)\s*=?\s*'([^']+)'\s*(#.*)?", line)
        if include:
            kind, target, _ = include.groups()
            if target in files:
                found = effective(files, target, setting)
                value = found if found is not None else value
            else:
                assert kind == "include_if_exists", f"{name} includes the missing {target}"
            continue
        match = re.fullmatch(rf"{re.escape(setting)}\s*=\s*'((?:[^']|'')*)'\s*(#.*)?", line)
        if match:
            value = match.group(1).replace("''", "'")
    return value


def test_the_prod_overlay_renders_with_the_repository(rendered: dict[str, list[dict[str, Any]]]) -> None:
    repo_config = find(rendered[PROD], "ConfigMap", "pgtool-repo")["data"]
    assert re.fullmatch(r"s3://[a-z0-9.-]+/[\w./-]+", repo_config["PGTOOL_REPO"])
    assert repo_config["PGTOOL_REPO_KEY_FILE"].startswith("/")
    assert set(repo_config) <= {"PGTOOL_REPO", "PGTOOL_REPO_KEY_FILE", "AWS_REGION", "AWS_ENDPOINT_URL"}
    # nothing local any more: the claims are gone from prod, and QA (the base) keeps them
    claims = {o["metadata"]["name"] for o in rendered[PROD] if o["kind"] == "PersistentVolumeClaim"}
    assert claims == {"postgres-data", "postgres-replica-data"}
    for target in ("base", "overlays/qa"):
        find(rendered[target], "PersistentVolumeClaim", "postgres-backups")
        find(rendered[target], "PersistentVolumeClaim", "postgres-wal-archive")
        assert not [o for o in rendered[target] if o["metadata"]["name"].startswith("pgtool-repo")], target


def test_every_backup_container_in_prod_uses_the_repository(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objs = rendered[PROD]
    repo_url = find(objs, "ConfigMap", "pgtool-repo")["data"]["PGTOOL_REPO"]
    containers = backup_containers(objs)
    names = {name for name, _, _ in containers}
    assert names == {
        "postgres",
        "postgres-replica",
        "pgtool-backup",
        "pgtool-basebackup",
        "pgtool-verify",
        "pgtool-verify-base",
        "pgtool-status",
    }
    for name, spec, container in containers:
        env = container_env(objs, container)
        assert env.get("PGTOOL_REPO") == repo_url, name
        assert not LOCAL_FLAGS & set(container.get("args") or []), f"{name}: {container['args']}"
        assert not any(a.startswith(tuple(f + "=" for f in LOCAL_FLAGS)) for a in container.get("args") or [])
        mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
        assert not mounts & {"/backups", "/wal-archive"}, name
        claims = {
            v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v
        }
        assert not claims & {"postgres-backups", "postgres-wal-archive"}, name
        # credentials: the optional Secret (absent with IRSA), through the ServiceAccount IRSA annotates
        assert {"secretRef": {"name": S3_SECRET, "optional": True}} in container["envFrom"], name
        assert spec["serviceAccountName"] == "pgtool-repo", name
    find(objs, "ServiceAccount", "pgtool-repo")
    # base and QA: the local volumes, no repository in any environment
    for target in ("base", "overlays/qa"):
        for name, _, container in backup_containers(rendered[target]):
            assert "PGTOOL_REPO" not in container_env(rendered[target], container), (target, name)


def test_the_repository_key_is_a_secret_file(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """PGTOOL_REPO_KEY_FILE names a file of a Secret volume, mode 0400, read-only; the key itself is never
    in env, envFrom or args, and no container outside the repository's users mounts it."""
    objs = rendered[PROD]
    key_file = find(objs, "ConfigMap", "pgtool-repo")["data"]["PGTOOL_REPO_KEY_FILE"]
    users = {id(c) for _, _, c in backup_containers(objs)}
    for _, spec, container in backup_containers(objs):
        mount = next(m for m in container["volumeMounts"] if key_file.startswith(m["mountPath"] + "/"))
        assert mount.get("readOnly") is True
        volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
        secret = volume["secret"]
        assert secret["secretName"] == KEY_SECRET
        assert secret["defaultMode"] == 0o400
        assert secret["items"] == [
            {"key": "repo.key", "path": key_file.removeprefix(mount["mountPath"] + "/")}
        ]
    for obj in objs:
        spec = pod_spec(obj)
        for container in (spec.get("initContainers", []) + spec["containers"]) if spec else []:
            where = f"{obj['metadata']['name']}/{container['name']}"
            for item in container.get("env", []):
                assert item.get("valueFrom", {}).get("secretKeyRef", {}).get("name") != KEY_SECRET, where
                assert "REPO_KEY" not in item["name"] or item["name"] == "PGTOOL_REPO_KEY_FILE", where
            for source in container.get("envFrom", []):
                assert source.get("secretRef", {}).get("name") != KEY_SECRET, where
            assert not any(KEY_SECRET in a or "repo.key" in a for a in container.get("args") or []), where
            if id(container) not in users:
                volumes = {
                    v["name"] for v in spec["volumes"] if v.get("secret", {}).get("secretName") == KEY_SECRET
                }
                assert not {m["name"] for m in container.get("volumeMounts", [])} & volumes, where


def test_no_secret_values_in_args_or_env(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """AWS keys and tokens only ever come from a Secret or IRSA; args carry no credential-looking text."""
    aws_secret_names = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
    for target in OVERLAYS:
        for obj in rendered[target]:
            if obj["kind"] == "ConfigMap":
                assert not aws_secret_names & set(obj.get("data", {})), obj["metadata"]["name"]
            spec = pod_spec(obj)
            for container in (spec.get("initContainers", []) + spec["containers"]) if spec else []:
                where = f"{target}: {obj['metadata']['name']}/{container['name']}"
                for item in container.get("env", []):
                    assert item["name"] not in aws_secret_names or "value" not in item, where
                text = " ".join(container.get("args") or []) + " ".join(container.get("command") or [])
                assert not re.search(r"AKIA[0-9A-Z]{12}|AWS_SECRET|aws_secret|--repo-key|sig=", text), where
                assert not re.search(r"\w+://[^\s/@]+@", text), where  # no credentials in a URL


def test_the_prod_server_config_archives_and_restores_through_the_repository(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """What PostgreSQL reads: postgresql.conf (primary) and replica.conf (standby) with their includes."""
    prod = find(rendered[PROD], "ConfigMap", "postgres-config")["data"]
    for conf in ("postgresql.conf", "replica.conf"):
        archive = effective(prod, conf, "archive_command")
        assert archive == 'pgtool archive-wal %p %f --repo "$PGTOOL_REPO" --compress zstd', conf
    assert (
        effective(prod, "replica.conf", "restore_command") == 'pgtool restore-wal %f %p --repo "$PGTOOL_REPO"'
    )
    settings = [line for line in prod["repository.conf"].splitlines() if not line.startswith("#")]
    assert not [line for line in settings if "--archive-dir" in line or "wal-archive" in line]
    for target in ("base", "overlays/qa"):
        files = find(rendered[target], "ConfigMap", "postgres-config")["data"]
        assert "repository.conf" not in files
        assert "--archive-dir /wal-archive" in (effective(files, "postgresql.conf", "archive_command") or "")
        assert "--archive-dir /wal-archive" in (effective(files, "replica.conf", "restore_command") or "")


def test_the_effective_setting_reader_follows_includes_in_order() -> None:
    """Guard for the reader above: an include replaces what came before it, a later line replaces it."""
    files = {
        "a.conf": "x = '1'\ninclude_if_exists 'b.conf'\ninclude_if_exists 'missing.conf'\n",
        "b.conf": "x = '2'\n",
        "c.conf": "include 'a.conf'\nx = '3'  # comment\n",
    }
    assert effective(files, "a.conf", "x") == "2"
    assert effective(files, "c.conf", "x") == "3"
    with pytest.raises(AssertionError):
        effective({"d.conf": "include 'missing.conf'\n"}, "d.conf", "x")


def test_the_example_secrets_are_fake_and_match_what_prod_references(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]
    for doc in docs:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
    secrets = {d["metadata"]["name"]: d["stringData"] for d in docs}
    assert set(secrets) == {KEY_SECRET, S3_SECRET}
    assert set(secrets[S3_SECRET]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    for values in secrets.values():
        for value in values.values():
            assert re.search(r"fake", value, re.IGNORECASE), value  # clearly not a real credential
    # the key item the pods mount is the one the example (and docs/deployment.md) create
    volume = next(
        v
        for v in pod_spec(find(rendered[PROD], "Deployment", "postgres"))["volumes"]  # type: ignore[index]
        if "secret" in v
    )
    assert [i["key"] for i in volume["secret"]["items"]] == list(secrets[KEY_SECRET])
    # never applied: no kustomization names the examples directory
    for path in MANIFESTS.rglob("kustomization.yaml"):
        assert "examples" not in path.read_text(), path
