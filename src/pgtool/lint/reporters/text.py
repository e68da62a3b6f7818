"""Human output: `path:line:col: RULE message`, the statement, and the recipe's one-line fix."""

from __future__ import annotations

from typing import TextIO

from pgtool.lint.engine import LintResult

_RESET = "\033[0m"
_STYLE = {
    "error": "\033[1;31m",
    "warning": "\033[1;33m",
    "dim": "\033[2m",
    "bold": "\033[1m",
    "fix": "\033[32m",
}


def write(result: LintResult, out: TextIO, *, color: bool = False) -> None:
    def paint(style: str, text: str) -> str:
        return f"{_STYLE[style]}{text}{_RESET}" if color else text

    lines: list[str] = []
    for f in result.findings:
        lock = f" [lock: {f.lock}]" if f.lock else ""
        lines.append(
            f"{paint('bold', f'{f.path}:{f.line}:{f.column}:')} {paint(f.severity, f.rule)} {f.message}{lock}"
        )
        for statement_line in f.statement.splitlines():
            lines.append(paint("dim", f"    | {statement_line}"))
        if f.fix:
            lines.append(f"    {paint('fix', 'fix:')} {f.fix}")
    errors, warnings = result.errors, result.warnings
    summary = (
        f"{result.files} file(s) checked: {errors} error(s), {warnings} warning(s), "
        f"{len(result.suppressed)} suppressed"
    )
    lines.append(paint("error" if errors else ("warning" if warnings else "bold"), summary))
    out.write("\n".join(lines) + "\n")
