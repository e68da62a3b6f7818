"""Every rule pgtool lint knows, built from the registrations in the rule modules.

A rule's id, slug, default severity, title, lock, one-line fix, test cases and runbook anchor live
with its function (`pgtool.lint.rules.rule`). Defaults: a statement that rewrites an existing table,
takes ACCESS EXCLUSIVE on one or fails outright is an error, the rest are warnings; any rule can be
promoted or demoted in the configuration ([lint.severity]). MIG000 (syntax error) is always an error.
The runbook (`runbooks/safe-migrations.md`) has one section per rule, headed with the rule id, whose
anchor is `helpUri` in SARIF.
"""

from __future__ import annotations

from pgtool.lint.rules import ERROR, REGISTRY, RUNBOOK, WARNING, Rule, load

load()

RULES: dict[str, Rule] = dict(sorted(REGISTRY.items()))
IGNORE_RULES = ("MIG090", "MIG091", "MIG092")

__all__ = ["ERROR", "IGNORE_RULES", "RULES", "RUNBOOK", "WARNING", "Rule"]
