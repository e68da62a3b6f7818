"""Helpers for the lint tests: lint SQL text in-process and get the findings or rule ids back."""

from __future__ import annotations

from pgtool.lint.context import Finding
from pgtool.lint.engine import lint_text
from pgtool.lint.settings import LintSettings


def lint_sql(sql: str, **settings: object) -> tuple[list[Finding], list[Finding]]:
    """(findings, suppressed) for `sql` linted as one file with these LintSettings fields."""
    return lint_text("m.sql", sql, LintSettings(**settings))  # type: ignore[arg-type]


def rules_of(sql: str, **settings: object) -> list[str]:
    """The rule ids `sql` triggers, in position order."""
    findings, _ = lint_sql(sql, **settings)
    return [f.rule for f in findings]
