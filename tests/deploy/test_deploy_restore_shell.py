"""manifests/tools/restore-shell.yaml, the pod runbooks/postgres-recovery.md works in, applied by hand with
`kubectl apply -f` into prod's namespace: it must be a valid Pod that references only what the prod overlay
renders (claims, ConfigMaps by their exact names, the ServiceAccount) or Secrets prod's own pods already
need, and it must get the backup repository exactly as prod's backup pods do."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml
from deploy_support import MANIFESTS

PROD = "overlays/prod"
SHELL = MANIFESTS / "tools/restore-shell.yaml"


def shell() -> dict[str, Any]:
    (doc,) = [d for d in yaml.safe_load_all(SHELL.read_text()) if d]
    return doc


def pod_specs(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    specs = []
    for obj in objs:
        if obj["kind"] == "CronJob":
            specs.append(obj["spec"]["jobTemplate"]["spec"]["template"]["spec"])
        elif obj["kind"] in ("Deployment", "Job"):
            specs.append(obj["spec"]["template"]["spec"])
    return specs


def secrets_used(spec: dict[str, Any]) -> set[str]:
    names = {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
    for container in spec.get("initContainers", []) + spec["containers"]:
        names |= {s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s}
        names |= {
            e["valueFrom"]["secretKeyRef"]["name"]
            for e in container.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})
        }
    return names


@pytest.mark.parametrize("version", ["1.27.0", kubernetes_validate.latest_version()])
def test_the_restore_shell_is_a_valid_pod(version: str) -> None:
    kubernetes_validate.validate(shell(), version, strict=True)


def test_the_restore_shell_references_only_what_prod_has(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objs = rendered[PROD]
    names = {(o["kind"], o["metadata"]["name"]) for o in objs}  # exact names: apply -f cannot add hashes
    spec = shell()["spec"]
    for volume in spec["volumes"]:
        if "persistentVolumeClaim" in volume:
            assert ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) in names, volume
    (container,) = spec["containers"]
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            assert ("ConfigMap", source["configMapRef"]["name"]) in names, source
    assert ("ServiceAccount", spec["serviceAccountName"]) in names
    # Secrets are not rendered (docs/deployment.md creates them): only ones prod's pods already need
    needed: set[str] = set()
    for pod in pod_specs(objs):
        needed |= secrets_used(pod)
    assert secrets_used(spec) <= needed, secrets_used(spec) - needed
    # no claim prod deleted (the backup and WAL-archive volumes)
    claims = {
        v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v
    }
    assert claims == {"postgres-data"}


def test_the_restore_shell_gets_the_repository_as_prod_pods_do(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objs = rendered[PROD]
    postgres = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "postgres")[
        "spec"
    ]["template"]["spec"]
    server = next(c for c in postgres["containers"] if c["name"] == "postgres")
    spec = shell()["spec"]
    (container,) = spec["containers"]
    assert container["envFrom"] == server["envFrom"]  # ConfigMap pgtool-repo, optional Secret pgtool-repo-s3
    assert spec["serviceAccountName"] == postgres["serviceAccountName"]  # IRSA's role
    config = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "pgtool-repo")
    key_file = config["data"]["PGTOOL_REPO_KEY_FILE"]
    mount = next(m for m in container["volumeMounts"] if key_file.startswith(m["mountPath"] + "/"))
    assert mount["readOnly"] is True
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    server_key = next(v for v in postgres["volumes"] if v["name"] == "repo-key")
    assert volume["secret"] == server_key["secret"]  # the same Secret, item and 0400 mode
    # the same image, user and data mount as the server, so the files it writes are the server's
    assert container["image"] == server["image"]
    assert spec["securityContext"]["runAsUser"] == postgres["securityContext"]["runAsUser"]
    data = next(m for m in server["volumeMounts"] if m["name"] == "data")
    assert {"name": "data", "mountPath": data["mountPath"]} in container["volumeMounts"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    server_env = {e["name"]: e.get("value") for e in server["env"]}
    assert env["PGDATA"] == server_env["PGDATA"]
    assert env["SCRATCH"].startswith(data["mountPath"] + "/")  # fetched dumps go on the data volume
