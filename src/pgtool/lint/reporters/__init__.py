"""Reporters: turn a LintResult into text, JSON, GitHub workflow commands or SARIF 2.1.0."""

from __future__ import annotations

from typing import TextIO

from pgtool.lint.engine import LintResult

FORMATS = ("text", "json", "github", "sarif")


def write(result: LintResult, fmt: str, out: TextIO, *, color: bool = False) -> None:
    """Write `result` to `out` in format `fmt` (one of FORMATS)."""
    if fmt == "text":
        from pgtool.lint.reporters.text import write as text_write

        text_write(result, out, color=color)
    elif fmt == "json":
        from pgtool.lint.reporters.jsonout import write as json_write

        json_write(result, out)
    elif fmt == "github":
        from pgtool.lint.reporters.github import write as github_write

        github_write(result, out)
    elif fmt == "sarif":
        from pgtool.lint.reporters.sarif import write as sarif_write

        sarif_write(result, out)
    else:
        raise ValueError(f"unknown format {fmt}")
