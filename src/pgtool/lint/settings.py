"""What one lint run is configured with, after the config file and the command line are merged."""

from __future__ import annotations

from dataclasses import dataclass, field

from pgtool.lint.parse import DEFAULT_MAX_FILE_SIZE
from pgtool.lint.rules.catalog import IGNORE_RULES, RULES
from pgtool.lint.volatility import NEWEST


@dataclass
class LintSettings:
    pg_version: int = NEWEST
    only: set[str] | None = None  # run only these rules (None: all)
    disabled: set[str] = field(default_factory=set)
    exclude_paths: list[str] = field(default_factory=list)  # glob patterns
    severity: dict[str, str] = field(default_factory=dict)  # rule -> "error" / "warning" overrides
    max_file_size: int = DEFAULT_MAX_FILE_SIZE  # bytes; a larger file is a usage error
    # the migration runner wraps each file in BEGIN/COMMIT itself (Flyway, Django, Alembic, ...)
    assume_in_transaction: bool = False

    def enabled(self, rule: str) -> bool:
        if rule in ("MIG000", *IGNORE_RULES):
            return rule not in self.disabled or rule == "MIG000"
        if self.only is not None and rule not in self.only:
            return False
        return rule not in self.disabled

    def severity_of(self, rule: str) -> str:
        return self.severity.get(rule) or RULES[rule].severity
