"""Index rules: MIG001 CREATE INDEX without CONCURRENTLY, MIG015 DROP INDEX without CONCURRENTLY,
MIG016 REINDEX without CONCURRENTLY."""

from __future__ import annotations

from pgtool.lint.context import FileContext, Statement, rel_name
from pgtool.lint.locks import ACCESS_EXCLUSIVE, SHARE
from pgtool.lint.rules import on_statement, option_value


@on_statement("IndexStmt")
def create_index(ctx: FileContext, stmt: Statement) -> None:
    node = stmt.node
    relation = node.get("relation", {})
    if node.get("concurrent") or ctx.is_new(relation):
        return
    if not relation.get("inh"):
        # CREATE INDEX ... ON ONLY parent: the partitioned-table recipe's first step. It builds nothing
        # (the index stays invalid until each partition's index is attached), so it is instant.
        return
    kind = "CREATE UNIQUE INDEX" if node.get("unique") else "CREATE INDEX"
    ctx.report(
        stmt,
        "MIG001",
        f'{kind} on existing table "{rel_name(relation)}" without CONCURRENTLY blocks every write to it '
        "until the index is built",
        SHARE,
    )


@on_statement("DropStmt")
def drop_index(ctx: FileContext, stmt: Statement) -> None:
    node = stmt.node
    if node.get("removeType") != "OBJECT_INDEX" or node.get("concurrent"):
        return
    ctx.report(
        stmt,
        "MIG015",
        "DROP INDEX without CONCURRENTLY takes ACCESS EXCLUSIVE on the index's table: reads and writes "
        "queue behind it",
        ACCESS_EXCLUSIVE,
    )


def _concurrently(params: list) -> bool:
    return option_value(params, "concurrently")


@on_statement("ReindexStmt")
def reindex(ctx: FileContext, stmt: Statement) -> None:
    node = stmt.node
    if _concurrently(node.get("params", [])):
        return
    relation = node.get("relation")
    if relation and ctx.is_new(relation):
        return
    target = node.get("kind", "REINDEX_OBJECT_INDEX").removeprefix("REINDEX_OBJECT_")
    name = rel_name(relation) if relation else node.get("name", "")
    if target == "SYSTEM":
        # PostgreSQL refuses CONCURRENTLY for system catalogs: there is no online form to suggest.
        ctx.report(
            stmt,
            "MIG016",
            f"REINDEX SYSTEM {name} rebuilds every system catalog index under locks that block the "
            "whole database, and cannot be done CONCURRENTLY",
            f"{ACCESS_EXCLUSIVE} on each system catalog",
            fix="run REINDEX SYSTEM by hand in a maintenance window, never from a migration",
        )
        return
    ctx.report(
        stmt,
        "MIG016",
        f"REINDEX {target} {name} without CONCURRENTLY blocks writes to the table and reads that use the "
        "index until it finishes",
        f"{SHARE} on the table, {ACCESS_EXCLUSIVE} on the index",
    )
