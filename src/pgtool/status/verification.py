"""The last restore drill's result, read back from the Pushgateway `pgtool verify` pushes to.

`pgtool verify --pushgateway URL` pushes under job `pgtool-verify` (and `pgtool-verify-base` for base
backup drills) the common run gauges (docs/metrics.md). A backup nobody restored is a hope, not a backup:
a missing, failed or stale verification needs attention.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import Any

from pgtool.status.durations import format_duration
from pgtool.status.model import Section, Thresholds
from pgtool.status.recoverability import GAUGES as RECOVERABILITY_GAUGES

VERIFY_JOBS = ("pgtool-verify", "pgtool-verify-base")
RUN_GAUGES = (
    "pgtool_last_run_success",
    "pgtool_last_run_timestamp_seconds",
    "pgtool_last_success_timestamp_seconds",
)


def read_pushgateway(url: str, timeout: float = 5.0) -> str:
    """The Pushgateway's /metrics text. Raises OSError (URLError) when it cannot be read."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url}")
    request = urllib.request.Request(url.rstrip("/") + "/metrics", headers={"Accept": "text/plain"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - http(s) checked above
        return str(resp.read().decode("utf-8", "replace"))


def verify_results(text: str) -> dict[str, dict[str, Any]]:
    """{job: {gauge: value, "databases": {db: success}}} for the verify jobs found in `text`."""
    from prometheus_client.parser import text_string_to_metric_families

    jobs: dict[str, dict[str, Any]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            job = sample.labels.get("job")
            if job not in VERIFY_JOBS:
                continue
            entry = jobs.setdefault(job, {"databases": {}})
            if sample.name in RUN_GAUGES:
                entry[sample.name] = sample.value
            elif (
                sample.name in RECOVERABILITY_GAUGES
            ):  # the base drill's measurements (status/recoverability)
                entry[sample.name] = sample.value
            elif sample.name == "pgtool_verify_database_success" and "database" in sample.labels:
                entry["databases"][sample.labels["database"]] = sample.value == 1
    return jobs


def verification_section(
    pushgateway: str | None, thresholds: Thresholds, *, now: float | None = None
) -> Section:
    section = Section("verification", "Verification")
    if not pushgateway:
        section.lines.append("not checked (pass --pushgateway URL where pgtool verify pushes)")
        return section.skip("pass --pushgateway to read the last verify result")
    now = time.time() if now is None else now
    try:
        jobs = verify_results(read_pushgateway(pushgateway))
    except (OSError, urllib.error.URLError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        section.lines.append(f"Pushgateway {pushgateway} unreadable: {reason}")
        section.problem(
            f"cannot read the Pushgateway at {pushgateway}: {reason}",
            "check the URL and that the Pushgateway runs",
        )
        return section
    section.data["jobs"] = jobs
    if "pgtool-verify" not in jobs:
        section.lines.append("no result of job pgtool-verify in the Pushgateway")
        section.problem(
            "no verification result in the Pushgateway (job pgtool-verify)",
            "run pgtool verify --pushgateway URL (and schedule it): untested backups are not backups",
        )
    for job in VERIFY_JOBS:
        result = jobs.get(job)
        if result is None:
            continue
        ok = result.get("pgtool_last_run_success") == 1
        ran = result.get("pgtool_last_run_timestamp_seconds")
        success = result.get("pgtool_last_success_timestamp_seconds")
        ran_age = now - ran if ran else None
        success_age = now - success if success else None
        failed_dbs = sorted(db for db, good in result["databases"].items() if not good)
        section.lines.append(
            f"{job}: last run {'succeeded' if ok else 'FAILED'} {format_duration(ran_age)} ago, "
            f"last success {format_duration(success_age) + ' ago' if success_age is not None else 'never'}"
            + (f"; failed: {', '.join(failed_dbs)}" if failed_dbs else "")
        )
        if not ok:
            section.problem(
                f"the last {job} run failed ({format_duration(ran_age)} ago)"
                + (f" for {', '.join(failed_dbs)}" if failed_dbs else ""),
                "run pgtool verify and read why the restore drill failed; fix the backup, not the drill",
            )
        elif success_age is None or success_age > thresholds.max_verify_age:
            section.problem(
                f"no successful {job} run for {format_duration(success_age) if success_age else 'ever'} "
                f"(limit {format_duration(thresholds.max_verify_age)})",
                "check the verify CronJob's schedule and last runs",
            )
    return section
