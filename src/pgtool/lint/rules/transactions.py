"""MIG007: statements that cannot run inside a transaction block, in a file that makes one.

Migration runners send a file as one query string, which PostgreSQL runs as one implicit
transaction: CREATE INDEX CONCURRENTLY and its kin then fail with "cannot run inside a transaction
block", even beside a lone SET. VACUUM, REINDEX SCHEMA/SYSTEM/DATABASE, CREATE/DROP DATABASE,
CREATE/DROP TABLESPACE, ALTER SYSTEM and (before PostgreSQL 12) ALTER TYPE ... ADD VALUE have the
same restriction. Inside a DO block they always fail.
"""

from __future__ import annotations

from pgtool.lint.context import FileContext, Statement
from pgtool.lint.locks import ACCESS_EXCLUSIVE, DATABASE_EXCLUSIVE, SHARE_UPDATE_EXCLUSIVE
from pgtool.lint.rules import ERROR, cases, rule
from pgtool.lint.rules.indexes import concurrently

_ALONE = "run it alone in its own migration file (no BEGIN, no SET), outside any transaction"
# Statements refused in a transaction block whatever their options: (what, lock they take)
_ALWAYS = {
    "CreatedbStmt": ("CREATE DATABASE", "SHARE on the template database"),
    "DropdbStmt": ("DROP DATABASE", DATABASE_EXCLUSIVE),
    "AlterSystemStmt": ("ALTER SYSTEM", "none on tables (rewrites postgresql.auto.conf)"),
    "CreateTableSpaceStmt": ("CREATE TABLESPACE", "none on tables"),
    "DropTableSpaceStmt": ("DROP TABLESPACE", "none on tables"),
}


def _non_transactional(ctx: FileContext, stmt: Statement) -> tuple[str, str, bool] | None:
    """(what, lock, is a CONCURRENTLY form) when `stmt` cannot run in a transaction block."""
    node = stmt.node
    kind = stmt.kind
    if kind in _ALWAYS:
        what, lock = _ALWAYS[kind]
        return what, lock, False
    if kind == "IndexStmt" and node.get("concurrent"):
        return "CREATE INDEX CONCURRENTLY", SHARE_UPDATE_EXCLUSIVE, True
    if kind == "DropStmt" and node.get("concurrent"):
        return "DROP INDEX CONCURRENTLY", SHARE_UPDATE_EXCLUSIVE, True
    if kind == "ReindexStmt":
        if concurrently(node.get("params", [])):
            return "REINDEX CONCURRENTLY", SHARE_UPDATE_EXCLUSIVE, True
        target = node.get("kind", "").removeprefix("REINDEX_OBJECT_")
        if target in ("SCHEMA", "SYSTEM", "DATABASE"):
            return f"REINDEX {target}", "SHARE on each table, in turn", False
    if kind == "AlterTableStmt":
        for item in node.get("cmds", []):
            cmd = item.get("AlterTableCmd", {})
            if cmd.get("subtype") == "AT_DetachPartition" and (cmd.get("def") or {}).get(
                "PartitionCmd", {}
            ).get("concurrent"):
                return "DETACH PARTITION CONCURRENTLY", SHARE_UPDATE_EXCLUSIVE, True
    if kind == "VacuumStmt" and node.get("is_vacuumcmd"):
        return "VACUUM", SHARE_UPDATE_EXCLUSIVE, False
    if kind == "AlterEnumStmt" and not node.get("oldVal") and ctx.pg_version < 12:
        return f"ALTER TYPE ... ADD VALUE (PostgreSQL {ctx.pg_version})", ACCESS_EXCLUSIVE, False
    if kind == "AlterDatabaseStmt" and any(
        o.get("DefElem", {}).get("defname") == "tablespace" for o in node.get("options", [])
    ):
        return "ALTER DATABASE ... SET TABLESPACE", DATABASE_EXCLUSIVE, False
    return None


@cases(
    fires=[
        "SET lock_timeout = '1s';\nCREATE INDEX CONCURRENTLY i ON orders (a);",
        "BEGIN; DROP INDEX CONCURRENTLY i; COMMIT;",
        "SELECT 1; REINDEX INDEX CONCURRENTLY i;",
        "SELECT 1; ALTER TABLE p DETACH PARTITION c CONCURRENTLY;",
        "SELECT 1; VACUUM orders;",
        "DO $$ BEGIN EXECUTE 'CREATE INDEX CONCURRENTLY i ON t (a)'; END $$;",
        "SET lock_timeout = '2s'; CREATE DATABASE app2;",
        "SELECT 1; DROP DATABASE app2;",
        "SELECT 1; ALTER SYSTEM SET work_mem = '64MB';",
        "SELECT 1; REINDEX DATABASE app;",
    ],
    passes=[
        "CREATE INDEX CONCURRENTLY i ON orders (a);",
        "-- only a comment\nDROP INDEX CONCURRENTLY IF EXISTS i;\n-- trailing",
        "REINDEX INDEX CONCURRENTLY i;",
        "SELECT 1; REFRESH MATERIALIZED VIEW CONCURRENTLY mv;",
        "ANALYZE orders; SELECT 1;",
        "SELECT 1; REINDEX (CONCURRENTLY 0) INDEX i;",
        "CREATE DATABASE app2;",
        "SELECT 1; ALTER DATABASE app SET work_mem = '64MB';",
    ],
)
@rule(
    "MIG007",
    "non-transactional-in-transaction",
    severity=ERROR,
    lock=f"{SHARE_UPDATE_EXCLUSIVE} (CONCURRENTLY forms); the statement fails",
    on=[
        "IndexStmt",
        "DropStmt",
        "ReindexStmt",
        "AlterTableStmt",
        "VacuumStmt",
        "AlterEnumStmt",
        "AlterDatabaseStmt",
        *_ALWAYS,
    ],
)
def outside_transaction(ctx: FileContext, stmt: Statement) -> None:
    """statement that cannot run in a transaction block shares its file

    Fix: put the CONCURRENTLY statement alone in its own migration file (no BEGIN, no SET)
    """
    found = _non_transactional(ctx, stmt)
    if found is None:
        return
    what, lock, concurrently = found
    if stmt.in_do:
        why = "a DO block always runs inside a transaction"
    elif ctx.settings.assume_in_transaction:
        why = "the migration runner wraps every file in a transaction (assume-in-transaction)"
    elif ctx.has_transaction_block:
        why = "the file opens a transaction block"
    elif ctx.statement_count > 1:
        why = (
            f"the file holds {ctx.statement_count} statements, which a migration runner sends as one "
            "implicit transaction"
        )
    else:
        return
    ctx.report(
        stmt,
        "MIG007",
        f"{what} cannot run inside a transaction block: {why}",
        lock,
        fix=None if concurrently else _ALONE,
    )


_BEGINS = ("TRANS_STMT_BEGIN", "TRANS_STMT_START")
_ENDS = ("TRANS_STMT_COMMIT", "TRANS_STMT_ROLLBACK", "TRANS_STMT_PREPARE")


@cases(
    fires=[
        "BEGIN; ALTER TABLE t ADD COLUMN a int;",
        "START TRANSACTION; SELECT 1; COMMIT; BEGIN; SELECT 2;",
    ],
    passes=[
        "BEGIN; SELECT 1; COMMIT;",
        "BEGIN; SELECT 1; ROLLBACK;",
        "SELECT 1; COMMIT;",
        "BEGIN; SAVEPOINT s; SELECT 1; RELEASE SAVEPOINT s; COMMIT;",
    ],
)
@rule(
    "MIG033",
    "transaction-control",
    severity=ERROR,
    lock="every lock taken so far, held until the connection ends",
    on=["TransactionStmt"],
)
def transaction_control(ctx: FileContext, stmt: Statement) -> None:
    """BEGIN without COMMIT, or transaction control in a file the runner wraps in a transaction

    Fix: end every BEGIN with COMMIT in the same file; with a wrapping runner, write no BEGIN/COMMIT at all
    """
    kind = stmt.node.get("kind", "")
    if ctx.settings.assume_in_transaction and (kind in _BEGINS or kind in _ENDS):
        word = "BEGIN" if kind in _BEGINS else "COMMIT / ROLLBACK"
        effect = (
            "only warns that a transaction is already in progress"
            if kind in _BEGINS
            else "ends the runner's transaction early: what follows runs outside it, and the runner's own "
            "COMMIT finds no transaction"
        )
        ctx.report(
            stmt,
            "MIG033",
            f"{word} in a file the migration runner already wraps in a transaction (assume-in-transaction) "
            f"{effect}",
            "none",
        )
    elif stmt.index == ctx.unclosed_begin:
        ctx.report(
            stmt,
            "MIG033",
            "BEGIN is never committed in this file: the transaction stays open after the migration, holding "
            "every lock it took, until the connection closes (PostgreSQL then rolls it back) or whatever "
            "runs next commits it",
            "every lock taken after it, until the connection ends",
        )
