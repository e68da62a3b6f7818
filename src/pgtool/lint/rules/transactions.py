"""MIG007: statements that cannot run inside a transaction block, in a file that makes one.

Migration runners send a file as one query string, which PostgreSQL runs as one implicit
transaction: CREATE INDEX CONCURRENTLY and its kin then fail with "cannot run inside a transaction
block", even beside a lone SET. VACUUM has the same restriction. Inside a DO block they always fail.
"""

from __future__ import annotations

from pgtool.lint.context import FileContext, Statement
from pgtool.lint.locks import SHARE_UPDATE_EXCLUSIVE
from pgtool.lint.rules import on_statement
from pgtool.lint.rules.indexes import _concurrently


def _non_transactional(stmt: Statement) -> str | None:
    node = stmt.node
    kind = stmt.kind
    if kind == "IndexStmt" and node.get("concurrent"):
        return "CREATE INDEX CONCURRENTLY"
    if kind == "DropStmt" and node.get("concurrent"):
        return "DROP INDEX CONCURRENTLY"
    if kind == "ReindexStmt" and _concurrently(node.get("params", [])):
        return "REINDEX CONCURRENTLY"
    if kind == "AlterTableStmt":
        for item in node.get("cmds", []):
            cmd = item.get("AlterTableCmd", {})
            if cmd.get("subtype") == "AT_DetachPartition" and (cmd.get("def") or {}).get(
                "PartitionCmd", {}
            ).get("concurrent"):
                return "DETACH PARTITION CONCURRENTLY"
    if kind == "VacuumStmt" and node.get("is_vacuumcmd"):
        return "VACUUM"
    return None


@on_statement("IndexStmt", "DropStmt", "ReindexStmt", "AlterTableStmt", "VacuumStmt")
def outside_transaction(ctx: FileContext, stmt: Statement) -> None:
    what = _non_transactional(stmt)
    if what is None:
        return
    if stmt.in_do:
        why = "a DO block always runs inside a transaction"
    elif ctx.has_transaction_block:
        why = "the file opens a transaction block"
    elif ctx.statement_count > 1:
        why = (
            f"the file holds {ctx.statement_count} statements, which a migration runner sends as one "
            "implicit transaction"
        )
    else:
        return
    ctx.report(stmt, "MIG007", f"{what} cannot run inside a transaction block: {why}", SHARE_UPDATE_EXCLUSIVE)
