"""What a status check returns: facts to show, and problems, each one line with what to do."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Section states: "ok" (checked, fine), "problem" (needs attention), "skipped" (not asked for, or not
# available here - never a failure by itself).
OK = "ok"
PROBLEM = "problem"
SKIPPED = "skipped"


@dataclass(frozen=True)
class Problem:
    """Something that needs attention: what is wrong and what to do about it."""

    area: str
    message: str
    fix: str

    def line(self) -> str:
        return f"{self.area}: {self.message} -> {self.fix}"

    def to_dict(self) -> dict[str, str]:
        return {"area": self.area, "message": self.message, "fix": self.fix}


@dataclass
class Section:
    """One part of the status screen.

    name: stable key (JSON). title: heading for text. lines: what the text screen shows.
    data: the same facts for JSON (plain types only). problems: what needs attention.
    note: why a section was skipped.
    """

    name: str
    title: str
    lines: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    skipped: bool = False
    note: str = ""

    @property
    def state(self) -> str:
        if self.problems:
            return PROBLEM
        return SKIPPED if self.skipped else OK

    def problem(self, message: str, fix: str) -> None:
        self.problems.append(Problem(self.name, message, fix))

    def require_dir(self, path: Path, what: str, fix: str, *, shown_as: str = "") -> bool:
        """True if `path` is a directory; else the screen says so and it is a problem
        ("<what> <path> does not exist", with `fix`). shown_as: the screen line's prefix."""
        if path.is_dir():
            return True
        self.lines.append(f"{shown_as + ' ' if shown_as else ''}{path} does not exist")
        self.problem(f"{what} {path} does not exist", fix)
        return False

    def skip(self, note: str) -> Section:
        self.skipped = True
        self.note = note
        return self


@dataclass(frozen=True)
class Thresholds:
    """When an age or a lag becomes a problem (seconds / bytes)."""

    max_dump_age: float = 26 * 3600
    max_base_age: float = 8 * 86400
    max_verify_age: float = 8 * 86400
    max_archive_lag: float = 15 * 60
    max_rpo: float = 15 * 60
    max_replication_lag: float = 5 * 60
    max_replication_lag_bytes: int = 1024 * 1024 * 1024
    max_xact_age: float = 15 * 60
    max_pool_wait: float = 5.0
    max_connections_used: float = 0.9


@dataclass
class StatusReport:
    """Every section, in screen order."""

    checked_at: str
    sections: list[Section]

    @property
    def problems(self) -> list[Problem]:
        return [p for s in self.sections for p in s.problems]

    @property
    def healthy(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "checked_at": self.checked_at,
            "problems": [p.to_dict() for p in self.problems],
            "sections": {
                s.name: {"state": s.state, **({"note": s.note} if s.note else {}), **s.data}
                for s in self.sections
            },
        }
