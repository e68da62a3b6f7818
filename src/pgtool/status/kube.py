"""pgtool's CronJobs in Kubernetes: last schedule and last successful run.

Only with the `k8s` extra (the kubernetes client) and a configuration: in a pod
(KUBERNETES_SERVICE_HOST and the service-account token) or a kubeconfig ($KUBECONFIG, ~/.kube/config).
The client costs ~270 ms to import, so it is imported only once both are known to be there.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path
from typing import Any

from pgtool.status.durations import format_duration
from pgtool.status.model import Section

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# A scheduled run still not successful this long after it started needs a look.
OVERDUE_SECONDS = 3600.0
API_TIMEOUT_SECONDS = 10


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and (SERVICE_ACCOUNT / "token").is_file()


def kubeconfig_path() -> Path | None:
    """The first existing kubeconfig file ($KUBECONFIG may list several), else None."""
    value = os.environ.get("KUBECONFIG")
    candidates = (
        [Path(p) for p in value.split(os.pathsep) if p] if value else [Path.home() / ".kube" / "config"]
    )
    return next((p for p in candidates if p.is_file()), None)


def client_installed() -> bool:
    return importlib.util.find_spec("kubernetes") is not None


def default_namespace() -> str:
    try:
        return (SERVICE_ACCOUNT / "namespace").read_text().strip() or "default"
    except OSError:
        return "default"


def is_pgtool_cronjob(name: str, labels: dict[str, str] | None) -> bool:
    labels = labels or {}
    return (
        "pgtool" in name
        or labels.get("app.kubernetes.io/part-of") == "pgtool"
        or labels.get("app.kubernetes.io/name") == "pgtool"
    )


def read_cronjobs(namespace: str) -> list[dict[str, Any]]:
    """pgtool CronJobs in `namespace`: name, schedule, suspend, last schedule/success (Unix times)."""
    from kubernetes import client, config

    if in_cluster():
        config.load_incluster_config()
    else:
        config.load_kube_config(config_file=str(kubeconfig_path()))
    api = client.BatchV1Api()
    items = api.list_namespaced_cron_job(namespace, _request_timeout=API_TIMEOUT_SECONDS).items
    jobs = []
    for cj in items:
        meta = cj.metadata
        if meta is None or not meta.name or not is_pgtool_cronjob(meta.name, meta.labels):
            continue
        status = cj.status
        jobs.append(
            {
                "name": meta.name,
                "schedule": cj.spec.schedule,
                "suspend": bool(cj.spec.suspend),
                "active": len(status.active or []) if status else 0,
                "last_schedule": status.last_schedule_time.timestamp()
                if status and status.last_schedule_time
                else None,
                "last_success": status.last_successful_time.timestamp()
                if status and status.last_successful_time
                else None,
            }
        )
    return jobs


def kubernetes_section(mode: str, namespace: str | None, *, now: float | None = None) -> Section:
    """mode: "auto" (check when the client and a configuration are present), "on" (must check), "off"."""
    section = Section("kubernetes", "Kubernetes")
    if mode == "off":
        section.lines.append("not checked (--k8s off)")
        return section.skip("--k8s off")
    configured = in_cluster() or kubeconfig_path() is not None
    if not client_installed() or not configured:
        why = (
            "the kubernetes client is not installed (pip install 'pgtool[k8s]')"
            if not client_installed()
            else "no Kubernetes configuration (not in a pod, no kubeconfig)"
        )
        section.lines.append(f"not checked: {why}")
        if mode == "on":
            section.problem(
                f"cannot read the pgtool CronJobs: {why}",
                "install pgtool[k8s] and run in the cluster or set KUBECONFIG",
            )
            return section
        return section.skip(why)
    namespace = namespace or default_namespace()
    section.data["namespace"] = namespace
    try:
        jobs = read_cronjobs(namespace)
    except Exception as exc:  # the client raises many types (config, HTTP, TLS): each is one line here
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        section.lines.append(f"cannot read CronJobs in {namespace}: {reason}")
        section.problem(
            f"cannot read the pgtool CronJobs in namespace {namespace}: {reason}",
            "check the kubeconfig context or the service account's RBAC (list cronjobs)",
        )
        return section
    now = time.time() if now is None else now
    section.data["cronjobs"] = jobs
    if not jobs:
        section.lines.append(f"no pgtool CronJobs in namespace {namespace}")
    for j in jobs:
        sched_age = now - j["last_schedule"] if j["last_schedule"] else None
        ok_age = now - j["last_success"] if j["last_success"] else None
        section.lines.append(
            f"{j['name']} ({j['schedule']}{', SUSPENDED' if j['suspend'] else ''}): last scheduled "
            f"{format_duration(sched_age)} ago, last success "
            f"{format_duration(ok_age) + ' ago' if ok_age is not None else 'never'}"
        )
        if j["suspend"]:
            section.problem(
                f"CronJob {j['name']} is suspended",
                f"kubectl patch cronjob {j['name']} -p "
                '\'{"spec":{"suspend":false}}\' once it is meant to run again',
            )
        elif (
            sched_age is not None
            and sched_age > OVERDUE_SECONDS
            and (j["last_success"] or 0) < j["last_schedule"]
        ):
            section.problem(
                f"CronJob {j['name']}: the run scheduled {format_duration(sched_age)} ago has not succeeded",
                f"kubectl logs job/<newest {j['name']} job>; kubectl describe cronjob {j['name']}",
            )
    return section
