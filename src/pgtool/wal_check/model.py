"""What `pgtool check` returns: one finding per check, and how it is shown (text or JSON)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

OK = "ok"
WARNING = "warning"  # worth knowing, not a failure: the exit code stays 0
PROBLEM = "problem"  # the archive cannot be trusted until fixed: exit 1
SKIPPED = "skipped"  # could not run because an earlier check failed; never a failure by itself


@dataclass(frozen=True)
class Finding:
    """One check's outcome: `message` says what was found, `fix` what to do (warnings and problems)."""

    check: str
    state: str
    message: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.state:<8} {self.check:<17} {self.message}"
        return f"{text} -> {self.fix}" if self.fix else text

    def to_dict(self) -> dict[str, str]:
        return {"check": self.check, "state": self.state, "message": self.message, "fix": self.fix}


@dataclass
class CheckResult:
    """Every finding in check order, plus the end-to-end measurements (None when not measured)."""

    target: str
    archive: str
    findings: list[Finding] = field(default_factory=list)
    segment: str | None = None
    restore_point: str | None = None
    archive_seconds: float | None = None

    def add(self, check: str, state: str, message: str, fix: str = "") -> Finding:
        finding = Finding(check, state, " ".join(message.split()), " ".join(fix.split()))
        self.findings.append(finding)
        return finding

    def replace(self, check: str, state: str, message: str, fix: str = "") -> None:
        """Replace the finding of `check` (a check settled later, e.g. a repository created meanwhile)."""
        new = Finding(check, state, " ".join(message.split()), " ".join(fix.split()))
        self.findings = [new if f.check == check else f for f in self.findings]

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.state == PROBLEM]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.state == WARNING]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "target": self.target,
            "archive": self.archive,
            "segment": self.segment,
            "restore_point": self.restore_point,
            "archive_seconds": self.archive_seconds,
            "problems": len(self.problems),
            "warnings": len(self.warnings),
            "checks": [f.to_dict() for f in self.findings],
        }


def render_text(result: CheckResult) -> str:
    out = [f"pgtool check  {result.target}  archive {result.archive}", ""]
    out.extend(f.line() for f in result.findings)
    out.append("")
    if result.problems:
        n = len(result.problems)
        out.append(f"{n} problem(s): WAL archiving cannot be trusted until they are fixed.")
    else:
        tail = f" ({len(result.warnings)} warning(s))" if result.warnings else ""
        out.append(f"WAL archiving works end to end{tail}.")
    return "\n".join(out) + "\n"


def render_json(result: CheckResult) -> str:
    return json.dumps(result.to_dict(), indent=2) + "\n"
