"""`--format github`: GitHub Actions workflow commands, one annotation per finding.

    ::error file=db/001.sql,line=3,col=1,title=MIG001::CREATE INDEX ... (lock: SHARE)

Data and property values are escaped as the Actions runner expects (%, CR, LF; plus : and , in
properties).
"""

from __future__ import annotations

from typing import TextIO

from pgtool.lint.engine import LintResult


def _data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _prop(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def write(result: LintResult, out: TextIO) -> None:
    lines = []
    for f in result.findings:
        level = "error" if f.severity == "error" else "warning"
        message = f.message + (f" (lock: {f.lock})" if f.lock else "") + (f"\nfix: {f.fix}" if f.fix else "")
        where = f"file={_prop(f.path)},line={f.line},col={f.column},title={_prop(f.rule)}"
        lines.append(f"::{level} {where}::{_data(message)}")
    lines.append(
        f"::notice::pgtool lint: {result.files} file(s), {result.errors} error(s), "
        f"{result.warnings} warning(s), {len(result.suppressed)} suppressed"
    )
    out.write("\n".join(lines) + "\n")
