"""`--format sarif`: SARIF 2.1.0 for code-scanning UIs (GitHub code scanning, GitLab, IDEs).

One run; the driver lists every rule with its fix and runbook section; suppressed findings are
results with an inSource suppression carrying the ignore's reason. Columns count characters.
"""

from __future__ import annotations

import json
from typing import Any, TextIO

from pgtool import __version__
from pgtool.lint.context import Finding
from pgtool.lint.engine import LintResult
from pgtool.lint.rules.catalog import RULES

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def _result(finding: Finding, index: dict[str, int]) -> dict[str, Any]:
    text = finding.message + (f" (lock: {finding.lock})" if finding.lock else "")
    result: dict[str, Any] = {
        "ruleId": finding.rule,
        "ruleIndex": index[finding.rule],
        "level": "error" if finding.severity == "error" else "warning",
        "message": {"text": text},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": finding.path.replace("\\", "/")},
                    "region": {"startLine": finding.line, "startColumn": finding.column},
                }
            }
        ],
    }
    if finding.lock:
        result["properties"] = {"lock": finding.lock}
    if finding.reason is not None:
        result["suppressions"] = [{"kind": "inSource", "justification": finding.reason}]
    return result


def document(result: LintResult) -> dict[str, Any]:
    rules = list(RULES.values())
    index = {rule.id: i for i, rule in enumerate(rules)}
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "pgtool lint",
                        "version": __version__,
                        "rules": [
                            {
                                "id": rule.id,
                                "name": rule.title,
                                "shortDescription": {"text": rule.title},
                                "help": {"text": f"{rule.fix} (recipe: {rule.anchor})"},
                                "defaultConfiguration": {
                                    "level": "error" if rule.severity == "error" else "warning"
                                },
                            }
                            for rule in rules
                        ],
                    }
                },
                "columnKind": "unicodeCodePoints",
                "results": [_result(f, index) for f in [*result.findings, *result.suppressed]],
            }
        ],
    }


def write(result: LintResult, out: TextIO) -> None:
    out.write(json.dumps(document(result), indent=2) + "\n")
