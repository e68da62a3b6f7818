"""Push a run's result to a Prometheus Pushgateway.

Every command pushes under the grouping key `job="pgtool-<command>"` the common gauges:
    pgtool_last_run_success               1 or 0
    pgtool_last_run_timestamp_seconds     when the run ended
    pgtool_last_run_duration_seconds      how long it took
    pgtool_last_success_timestamp_seconds only on success
Pushes to that group use POST (`pushadd_to_gateway`), which replaces only the metric names it sends, so
a failed run never erases the last success time. Commands add their own series to the `RunReport` they
are given. A series labelled `database` goes to a group of its own, `{job, database}`, replaced whole
(PUT) by a run that reports that database: a run over a subset (`backup -d X`, `verify -d X`) then
replaces X's series only, and the other databases' series (and the alerts reading them) stay. A
dropped database's group stays until deleted (`DELETE /metrics/job/<job>/database/<name>`).
A push failure is logged, never fatal: metrics must not turn a good backup into a failed run.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pgtool.obs.logging import get_logger


@dataclass
class _Series:
    name: str
    documentation: str
    labelnames: tuple[str, ...]
    samples: list[tuple[tuple[str, ...], float]] = field(default_factory=list)


class RunReport:
    """Gauges a command adds during a run; pushed together with the common gauges at the end."""

    def __init__(self) -> None:
        self._series: dict[str, _Series] = {}

    def gauge(self, name: str, documentation: str, value: float, **labels: str) -> None:
        """Record one sample of gauge `name` (labels must be the same names for every sample)."""
        names = tuple(sorted(labels))
        series = self._series.setdefault(name, _Series(name, documentation, names))
        if series.labelnames != names:
            raise ValueError(f"gauge {name}: labels {names} differ from {series.labelnames}")
        series.samples.append((tuple(str(labels[n]) for n in names), float(value)))

    def gauges(self, samples: Iterable[tuple[str, str, float]], **labels: str) -> None:
        """Record several gauges `(name, documentation, value)` that share their labels (one database's)."""
        for name, documentation, value in samples:
            self.gauge(name, documentation, value, **labels)

    def series(self) -> list[_Series]:
        return list(self._series.values())


def job_name(command: str) -> str:
    return f"pgtool-{command}"


def push_run_result(
    url: str,
    command: str,
    *,
    success: bool,
    duration_seconds: float,
    report: RunReport | None = None,
    finished_at: float | None = None,
    timeout: float = 10.0,
) -> bool:
    """Push the run's gauges to the Pushgateway at `url`. Returns True if the push succeeded."""
    from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, pushadd_to_gateway

    log = get_logger()
    now = time.time() if finished_at is None else finished_at
    job = job_name(command)
    registry = CollectorRegistry()
    Gauge("pgtool_last_run_success", "1 if the last run succeeded, else 0", registry=registry).set(
        1 if success else 0
    )
    Gauge("pgtool_last_run_timestamp_seconds", "When the last run ended", registry=registry).set(now)
    Gauge("pgtool_last_run_duration_seconds", "Duration of the last run", registry=registry).set(
        duration_seconds
    )
    if success:
        Gauge(
            "pgtool_last_success_timestamp_seconds",
            "When the last successful run ended",
            registry=registry,
        ).set(now)
    per_database: dict[str, CollectorRegistry] = {}
    for series in report.series() if report else []:
        if "database" not in series.labelnames:
            _add(registry, series, series.samples)
            continue
        at = series.labelnames.index("database")
        for database in dict.fromkeys(values[at] for values, _ in series.samples):
            target = per_database.setdefault(database, CollectorRegistry())
            _add(target, series, [(v, x) for v, x in series.samples if v[at] == database])
    try:
        pushadd_to_gateway(url, job=job, registry=registry, timeout=timeout)
        for database, target in per_database.items():
            key = {"database": database}
            try:
                push_to_gateway(url, job=job, grouping_key=key, registry=target, timeout=timeout)
            except Exception as exc:
                if getattr(exc, "code", None) != 400 or not _migrate(url, job, timeout):
                    raise
                push_to_gateway(url, job=job, grouping_key=key, registry=target, timeout=timeout)
    except Exception as exc:  # any transport failure: logged, never fatal
        log.warning("metrics push failed", pushgateway=url, error=str(exc))
        return False
    log.debug("metrics pushed", pushgateway=url, job=job, databases=len(per_database))
    return True


def _add(registry: Any, series: _Series, samples: list[tuple[tuple[str, ...], float]]) -> None:
    from prometheus_client import Gauge

    gauge = Gauge(series.name, series.documentation, series.labelnames, registry=registry)
    for values, value in samples:
        (gauge.labels(*values) if values else gauge).set(value)


def _migrate(url: str, job: str, timeout: float) -> bool:
    """Move per-database series out of the `{job}` group, where versions before 2026-12 pushed them.

    The Pushgateway refuses a `{job, database}` group whose series the `{job}` group holds too. The
    `{job}` group is rebuilt without them, its other gauges (the last success time) kept. True if it
    held any.
    """
    import json
    import urllib.request

    from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

    base = url if "://" in url else f"http://{url}"
    if not base.startswith(("http://", "https://")):
        return False
    with urllib.request.urlopen(f"{base.rstrip('/')}/api/v1/metrics", timeout=timeout) as resp:  # noqa: S310
        groups = json.load(resp).get("data", [])
    group = next((g for g in groups if g.get("labels") == {"job": job}), None)
    if group is None:
        return False
    keep = CollectorRegistry()
    moved = False
    for name, family in group.items():
        if not isinstance(family, dict) or family.get("type") != "GAUGE" or name.startswith("push_"):
            continue
        metrics = family.get("metrics", [])
        labels = [{k: v for k, v in m["labels"].items() if k not in ("job", "instance")} for m in metrics]
        if any("database" in lbl for lbl in labels):
            moved = True
            continue
        names = sorted(labels[0]) if labels else []
        gauge = Gauge(name, family.get("help") or name, names, registry=keep)
        for lbl, metric in zip(labels, metrics, strict=True):
            (gauge.labels(*(lbl[n] for n in names)) if names else gauge).set(float(metric["value"]))
    if moved:
        push_to_gateway(url, job=job, registry=keep, timeout=timeout)
        get_logger().info("moved per-database series to groups of their own", pushgateway=url, job=job)
    return moved
