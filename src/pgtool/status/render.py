"""Print a StatusReport: one screen of text, or one JSON document."""

from __future__ import annotations

import json

from pgtool.status.model import PROBLEM, SKIPPED, StatusReport

TITLE_WIDTH = 14
MARKS = {PROBLEM: "!!", SKIPPED: "--"}


def render_json(report: StatusReport) -> str:
    return json.dumps(report.to_dict(), indent=2, default=str) + "\n"


def render_text(report: StatusReport, *, target: str = "") -> str:
    out = [f"pgtool status  {report.checked_at}" + (f"  {target}" if target else ""), ""]
    for section in report.sections:
        mark = MARKS.get(section.state, "ok")
        lines = section.lines or [""]
        out.append(f"{mark} {section.title:<{TITLE_WIDTH}}{lines[0]}")
        out.extend(f"   {'':<{TITLE_WIDTH}}{line}" for line in lines[1:])
    out.append("")
    problems = report.problems
    if problems:
        out.append(f"Needs attention ({len(problems)}):")
        out.extend(f"  - {p.line()}" for p in problems)
    else:
        out.append("Healthy: nothing needs attention.")
    return "\n".join(out) + "\n"
