"""`pgtool evidence report`: a plain summary of a period for an auditor.

Drills run, passed and failed since a date (by kind), the longest gap between successful drills
(from the start of the period to the first success, between successes, and from the last one to the
end of the period: an auditor asks how long the backups went unproven), and whether the chain holds.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pgtool.evidence import log


@dataclass
class Report:
    since: datetime
    until: datetime
    run: int = 0
    passed: int = 0
    failed: int = 0
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    longest_gap_seconds: float | None = None
    longest_gap: tuple[str, str] | None = None  # its start and end (ISO 8601)
    last_success: str | None = None
    chain_ok: bool = True
    chain_breaks: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "drills_run": self.run,
            "passed": self.passed,
            "failed": self.failed,
            "by_kind": self.by_kind,
            "longest_gap_seconds": self.longest_gap_seconds,
            "longest_gap": list(self.longest_gap) if self.longest_gap else None,
            "last_success": self.last_success,
            "chain_ok": self.chain_ok,
            "chain_breaks": self.chain_breaks,
        }

    def text(self) -> str:
        lines = [
            f"period            {self.since.isoformat()} .. {self.until.isoformat()}",
            f"drills run        {self.run}",
            f"passed            {self.passed}",
            f"failed            {self.failed}",
        ]
        for kind, counts in sorted(self.by_kind.items()):
            lines.append(
                f"  {kind:<16}{counts['run']} run, {counts['passed']} passed, {counts['failed']} failed"
            )
        if self.longest_gap is not None and self.longest_gap_seconds is not None:
            lines.append(
                f"longest gap       {_duration(self.longest_gap_seconds)} without a successful drill "
                f"({self.longest_gap[0]} .. {self.longest_gap[1]})"
            )
        lines.append(f"last success      {self.last_success or 'none in the period'}")
        lines.append(
            "chain             " + ("intact" if self.chain_ok else "BROKEN: " + "; ".join(self.chain_breaks))
        )
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days}d {hours}h {rest // 60}m" if days else f"{hours}h {rest // 60}m"


def _when(record: dict[str, Any]) -> datetime | None:
    value = record.get("finished_at") or record.get("recorded_at")
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def build(where: Path | log.Records, since: datetime, until: datetime | None = None) -> Report:
    """The report for records finished in [since, until] (until: now)."""
    records = log.as_records(where)
    until = until or datetime.now(UTC)
    report = Report(since=since, until=until)
    chain = log.verify_chain(records)
    report.chain_ok, report.chain_breaks = chain.ok, chain.breaks
    successes: list[datetime] = []
    for name in records.names():
        try:
            record = log.load(records, name)
        except log.UnreadableRecord:  # already a chain break; the report counts what it can read
            continue
        when = _when(record)
        if when is None or not since <= when <= until:
            continue
        kind = str(record.get("kind", "?"))
        counts = report.by_kind.setdefault(kind, {"run": 0, "passed": 0, "failed": 0})
        report.run += 1
        counts["run"] += 1
        if record.get("outcome") == "passed":
            report.passed += 1
            counts["passed"] += 1
            successes.append(when)
        else:
            report.failed += 1
            counts["failed"] += 1
    points = [since, *sorted(successes), until]
    for start, end in itertools.pairwise(points):
        gap = (end - start).total_seconds()
        if report.longest_gap_seconds is None or gap > report.longest_gap_seconds:
            report.longest_gap_seconds, report.longest_gap = gap, (start.isoformat(), end.isoformat())
    report.last_success = max(successes).isoformat() if successes else None
    return report
