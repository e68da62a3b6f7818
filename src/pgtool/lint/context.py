"""What rules see: the statement being checked, the file's state so far, and the run's state.

File state follows the migration runner's model: a file is sent as one query string, so it runs as
one implicit transaction unless it says COMMIT. Run state carries facts across files (linted in
sorted order): functions created with a known volatility, CHECK constraints validated, partition keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pgtool.lint.source import Source


@dataclass
class Finding:
    path: str
    line: int
    column: int
    rule: str
    severity: str
    message: str
    lock: str | None
    statement: str = ""
    fix: str = ""
    reason: str | None = None  # set on suppressed findings


@dataclass(slots=True)
class Statement:
    kind: str  # the parse node type: "AlterTableStmt", ...
    node: dict[str, Any]
    start: int  # character offset of the first token (of the DO block, for statements inside one)
    end: int
    index: int  # index among the file's top-level statements
    in_do: bool = False  # found inside a DO block (EXECUTE of a constant, or static SQL)


def rel_name(rv: dict[str, Any]) -> str:
    """A RangeVar as the user would write it (schema-qualified when it was)."""
    name = rv.get("relname", "")
    schema = rv.get("schemaname")
    return f"{schema}.{name}" if schema else name


def names_from_list(items: list[Any]) -> tuple[str | None, str]:
    """(schema, name) from a list of String nodes (DROP TABLE s.t)."""
    parts = [i.get("String", {}).get("sval", "") for i in items]
    if len(parts) >= 2:
        return parts[-2], parts[-1]
    return None, parts[-1] if parts else ""


class TableSet:
    """Table names, matched leniently: an unqualified name on either side matches any schema."""

    def __init__(self) -> None:
        self._schemas: dict[str, set[str | None]] = {}

    def add(self, schema: str | None, name: str) -> None:
        self._schemas.setdefault(name, set()).add(schema)

    def add_rv(self, rv: dict[str, Any]) -> None:
        self.add(rv.get("schemaname"), rv.get("relname", ""))

    def contains(self, schema: str | None, name: str) -> bool:
        schemas = self._schemas.get(name)
        if not schemas:
            return False
        return schema is None or None in schemas or schema in schemas

    def contains_rv(self, rv: dict[str, Any]) -> bool:
        return self.contains(rv.get("schemaname"), rv.get("relname", ""))


@dataclass
class RunState:
    """Facts carried from file to file within one lint run."""

    functions: dict[str, str] = field(default_factory=dict)  # name -> volatility
    # (table, column) pairs with a validated CHECK (column IS NOT NULL)
    not_null_checks: set[tuple[str, str]] = field(default_factory=set)
    # table -> column sets of validated CHECK constraints (for ATTACH PARTITION)
    checks: dict[str, list[set[str]]] = field(default_factory=dict)
    # (table, constraint) -> (kind, columns) for constraints added NOT VALID, awaiting VALIDATE
    not_valid: dict[tuple[str, str], tuple[str, Any]] = field(default_factory=dict)
    partition_keys: dict[str, set[str]] = field(default_factory=dict)


class FileContext:
    """One file's lint state; rules call `report`."""

    def __init__(self, source: Source, settings: Any, run: RunState, statement_count: int) -> None:
        self.source = source
        self.settings = settings
        self.run = run
        self.pg_version: int = settings.pg_version
        self.statement_count = statement_count
        self.has_transaction_block = False
        self.created = TableSet()  # tables / views created earlier in this file
        self.domains = TableSet()  # domains created earlier in this file
        self.views = TableSet()  # views created anywhere in this file (a renamed table's stand-in)
        self.timeouts: set[str] = set()  # lock_timeout / statement_timeout set (non-zero) so far
        self.timeouts_local: set[str] = set()  # ... with SET LOCAL: gone at the end of the transaction
        self.reported_once: set[str] = set()  # rules reported at most once per file
        self.several_transactions = False  # a COMMIT/ROLLBACK before the last statement
        self.unclosed_begin: int | None = None  # index of a BEGIN never committed or rolled back
        # (table, constraint) added in the current transaction of this file
        self.tx_constraints: set[tuple[str, str]] = set()
        # enum values added in the current transaction (value -> type) and enum types created in it
        self.tx_enum_values: dict[str, str] = {}
        self.tx_enum_types: set[str] = set()
        self.raw: list[tuple[Statement, str, str, str | None, str | None]] = []
        self.long_words: bool | None = None  # a word long enough to be a >63-byte identifier (MIG036)

    @property
    def lock_timeout(self) -> bool:
        return "lock_timeout" in self.timeouts

    def is_new(self, rv: dict[str, Any] | None) -> bool:
        """True when the RangeVar names a table created earlier in this file."""
        return bool(rv) and self.created.contains_rv(rv)  # type: ignore[arg-type]

    def report(
        self, stmt: Statement, rule: str, message: str, lock: str | None, *, fix: str | None = None
    ) -> None:
        """Record a finding of `rule` on `stmt` (filtering and ignores are applied later).

        `fix` replaces the rule's usual one-line fix when this case needs another (REINDEX SYSTEM).
        """
        if stmt.in_do:
            message = f"in DO block: {message}"
        self.raw.append((stmt, rule, message, lock, fix))
