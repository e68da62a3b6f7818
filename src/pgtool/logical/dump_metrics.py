"""The per-database gauges of `pgtool backup`, for a backup directory or a repository alike."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pgtool.obs.metrics import RunReport

if TYPE_CHECKING:
    from pgtool.logical.dump_job import DumpResult


@dataclass(frozen=True)
class Newest:
    """What the metrics say of a database's newest complete dump."""

    finished_at: float
    size_bytes: int
    duration_seconds: float


def record_metrics(
    report: RunReport, results: list[DumpResult], newest: Callable[[str], Newest | None]
) -> None:
    """Per-database gauges. Time, size and duration come from the newest complete dump stored, so a
    database that failed this run still reports its last good dump (the Pushgateway's POST replaces a
    whole metric family: a series left out would vanish)."""
    for r in results:
        samples: list[tuple[str, str, float]] = [
            (
                "pgtool_backup_database_success",
                "1 if this database's dump succeeded in the last run",
                1 if r.ok else 0,
            )
        ]
        last = newest(r.database)
        if last is not None:
            samples += [
                (
                    "pgtool_backup_database_last_success_timestamp_seconds",
                    "When this database was last dumped successfully",
                    last.finished_at,
                ),
                ("pgtool_backup_database_size_bytes", "Size of the newest dump", last.size_bytes),
                (
                    "pgtool_backup_database_duration_seconds",
                    "How long the newest dump took",
                    last.duration_seconds,
                ),
            ]
        report.gauges(samples, database=r.database)
