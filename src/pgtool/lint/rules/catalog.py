"""Every rule pgtool lint knows: id, default severity, title, the recipe's one-line fix, runbook anchor.

The eight core rules (MIG001-MIG008) are errors; the rules beyond them default to warnings and can be
promoted through configuration. MIG000 (syntax error) is always an error. MIG090-MIG092 report ignore
comments themselves. The runbook (`runbooks/safe-migrations.md`) has one section per rule, headed
with the rule id, whose anchor is `helpUri` in SARIF.
"""

from __future__ import annotations

from dataclasses import dataclass

ERROR = "error"
WARNING = "warning"

RUNBOOK = "runbooks/safe-migrations.md"


@dataclass(frozen=True)
class Rule:
    id: str
    severity: str
    title: str
    fix: str

    @property
    def anchor(self) -> str:
        return f"{RUNBOOK}#{self.id.lower()}"


_RULES = [
    Rule("MIG000", ERROR, "syntax error", "fix the SQL so PostgreSQL's parser accepts it"),
    Rule(
        "MIG001",
        ERROR,
        "CREATE INDEX without CONCURRENTLY on an existing table",
        "use CREATE INDEX CONCURRENTLY, alone in its own migration file",
    ),
    Rule(
        "MIG002",
        ERROR,
        "ADD COLUMN with a volatile default rewrites the table",
        "add the column without a default (or with a constant), SET DEFAULT, then backfill in batches",
    ),
    Rule(
        "MIG003",
        ERROR,
        "ALTER COLUMN ... TYPE rewrites the table",
        "add a new column, backfill in batches, switch readers and writers, then drop the old one",
    ),
    Rule(
        "MIG004",
        ERROR,
        "CHECK constraint added without NOT VALID",
        "ADD CONSTRAINT ... CHECK (...) NOT VALID, then VALIDATE CONSTRAINT in a later migration",
    ),
    Rule(
        "MIG005",
        ERROR,
        "DROP COLUMN",
        "stop reading and writing the column in the application first, then drop it in a later release",
    ),
    Rule(
        "MIG006",
        ERROR,
        "RENAME COLUMN breaks running application code",
        "add the new column (or a view), dual-write, migrate readers, then drop the old name",
    ),
    Rule(
        "MIG007",
        ERROR,
        "statement that cannot run in a transaction block shares its file",
        "put the CONCURRENTLY statement alone in its own migration file (no BEGIN, no SET)",
    ),
    Rule(
        "MIG008",
        ERROR,
        "LOCK TABLE",
        "drop the explicit lock; rely on the statement's own lock with a short lock_timeout",
    ),
    Rule(
        "MIG009",
        WARNING,
        "FOREIGN KEY added without NOT VALID",
        "ADD CONSTRAINT ... FOREIGN KEY ... NOT VALID, then VALIDATE CONSTRAINT in a later migration",
    ),
    Rule(
        "MIG010",
        WARNING,
        "VALIDATE CONSTRAINT in the same transaction as its ADD",
        "move VALIDATE CONSTRAINT to a later migration file (its own transaction)",
    ),
    Rule(
        "MIG011",
        WARNING,
        "SET NOT NULL without a validated CHECK (col IS NOT NULL)",
        "add CHECK (col IS NOT NULL) NOT VALID, VALIDATE it, then SET NOT NULL and drop the CHECK",
    ),
    Rule(
        "MIG012",
        WARNING,
        "UNIQUE / PRIMARY KEY / EXCLUDE constraint builds its index under ACCESS EXCLUSIVE",
        "CREATE UNIQUE INDEX CONCURRENTLY first, then ADD CONSTRAINT ... USING INDEX",
    ),
    Rule(
        "MIG013",
        WARNING,
        "ADD COLUMN ... NOT NULL without a default",
        "add the column nullable (or with a constant DEFAULT), backfill, then enforce NOT NULL safely",
    ),
    Rule(
        "MIG014",
        WARNING,
        "stored generated, identity or serial column added to an existing table",
        "add a plain nullable column, fill it in batches, then attach the default / sequence",
    ),
    Rule(
        "MIG015",
        WARNING,
        "DROP INDEX without CONCURRENTLY",
        "use DROP INDEX CONCURRENTLY, alone in its own migration file",
    ),
    Rule(
        "MIG016",
        WARNING,
        "REINDEX without CONCURRENTLY",
        "use REINDEX ... CONCURRENTLY, alone in its own migration file",
    ),
    Rule(
        "MIG017",
        WARNING,
        "DROP TABLE",
        "stop using the table first; drop it in a later release, with a short lock_timeout",
    ),
    Rule(
        "MIG018",
        WARNING,
        "TRUNCATE",
        "delete in batches, or drop the table once nothing uses it",
    ),
    Rule(
        "MIG019",
        WARNING,
        "RENAME TABLE breaks running application code",
        "rename, then create a view with the old name until every reader has moved",
    ),
    Rule(
        "MIG020",
        WARNING,
        "VACUUM FULL rewrites the table under ACCESS EXCLUSIVE",
        "use plain VACUUM, or an online repack tool (pg_repack / pg_squeeze) off-peak",
    ),
    Rule(
        "MIG021",
        WARNING,
        "CLUSTER rewrites the table under ACCESS EXCLUSIVE",
        "use an online repack tool (pg_repack --order-by) or leave the ordering alone",
    ),
    Rule(
        "MIG022",
        WARNING,
        "SET TABLESPACE copies the relation under ACCESS EXCLUSIVE",
        "create a new index CONCURRENTLY in the target tablespace, or move data with an online tool",
    ),
    Rule(
        "MIG023",
        WARNING,
        "SET LOGGED / SET UNLOGGED rewrites the table",
        "create the table with the right persistence and copy data in batches",
    ),
    Rule(
        "MIG024",
        WARNING,
        "ATTACH PARTITION without a matching validated CHECK constraint",
        "add a CHECK matching the partition bound (NOT VALID, then VALIDATE) before ATTACH PARTITION",
    ),
    Rule(
        "MIG025",
        WARNING,
        "DETACH PARTITION without CONCURRENTLY",
        "use DETACH PARTITION ... CONCURRENTLY (PostgreSQL 14+), alone in its own migration file",
    ),
    Rule(
        "MIG026",
        WARNING,
        "REFRESH MATERIALIZED VIEW without CONCURRENTLY",
        "add a UNIQUE index on plain columns and use REFRESH MATERIALIZED VIEW CONCURRENTLY",
    ),
    Rule(
        "MIG027",
        WARNING,
        "no lock_timeout before a statement that takes ACCESS EXCLUSIVE",
        "SET lock_timeout = '2s' at the top of the file, and retry the migration when it times out",
    ),
    Rule(
        "MIG028",
        WARNING,
        "dynamic SQL in a DO block cannot be checked",
        "write the DDL as plain statements, or EXECUTE a constant string the linter can read",
    ),
    Rule(
        "MIG029",
        WARNING,
        "ALTER DOMAIN ADD CONSTRAINT / SET NOT NULL checks every column of the domain at once",
        "use table-level CHECK constraints (NOT VALID, then VALIDATE), or add it NOT VALID off-peak",
    ),
    Rule(
        "MIG030",
        WARNING,
        "enum value used in the transaction that added it",
        "add the value with ALTER TYPE ... ADD VALUE in one migration file, use it in a later one",
    ),
    Rule(
        "MIG090",
        WARNING,
        "ignore comment without a reason (not applied)",
        'add reason="why this is safe" to the migration-lint comment',
    ),
    Rule(
        "MIG091",
        WARNING,
        "ignore comment that suppresses nothing",
        "remove the migration-lint comment, or move it to the line before the statement",
    ),
    Rule(
        "MIG092",
        WARNING,
        "malformed ignore comment",
        'write -- migration-lint: ignore=MIG001,MIG003 reason="..."',
    ),
]

RULES: dict[str, Rule] = {rule.id: rule for rule in _RULES}
CORE_RULES = tuple(f"MIG00{n}" for n in range(1, 9))
IGNORE_RULES = ("MIG090", "MIG091", "MIG092")
