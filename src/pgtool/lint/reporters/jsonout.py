"""`--format json`: {"files": N, "findings": [...], "suppressed": [...]}.

Each finding: path, line, column, rule, severity, message, lock. Suppressed findings add the ignore's
reason.
"""

from __future__ import annotations

import json
from typing import Any, TextIO

from pgtool.lint.context import Finding
from pgtool.lint.engine import LintResult

KEYS = ("path", "line", "column", "rule", "severity", "message", "lock")


def finding_dict(finding: Finding) -> dict[str, Any]:
    return {key: getattr(finding, key) for key in KEYS}


def write(result: LintResult, out: TextIO) -> None:
    payload = {
        "files": result.files,
        "findings": [finding_dict(f) for f in result.findings],
        "suppressed": [{**finding_dict(f), "reason": f.reason} for f in result.suppressed],
    }
    out.write(json.dumps(payload, indent=2) + "\n")
