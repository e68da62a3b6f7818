"""Push a run's result to a Prometheus Pushgateway.

Every command pushes under the grouping key `job="pgtool-<command>"` the common gauges:
    pgtool_last_run_success               1 or 0
    pgtool_last_run_timestamp_seconds     when the run ended
    pgtool_last_run_duration_seconds      how long it took
    pgtool_last_success_timestamp_seconds only on success
Pushes use POST (`pushadd_to_gateway`), which replaces only the metric names it sends, so a failed run
never erases the last success time. Commands add their own series to the `RunReport` they are given.
A push failure is logged, never fatal: metrics must not turn a good backup into a failed run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

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
    from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway

    log = get_logger()
    now = time.time() if finished_at is None else finished_at
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
    for series in report.series() if report else []:
        gauge = Gauge(series.name, series.documentation, series.labelnames, registry=registry)
        for values, value in series.samples:
            (gauge.labels(*values) if values else gauge).set(value)
    try:
        pushadd_to_gateway(url, job=job_name(command), registry=registry, timeout=timeout)
    except Exception as exc:  # any transport failure: logged, never fatal
        log.warning("metrics push failed", pushgateway=url, error=str(exc))
        return False
    log.debug("metrics pushed", pushgateway=url, job=job_name(command))
    return True
