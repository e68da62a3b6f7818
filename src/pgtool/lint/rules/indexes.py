"""Index rules: MIG001 CREATE INDEX, MIG015 DROP INDEX and MIG016 REINDEX without CONCURRENTLY."""

from __future__ import annotations

from typing import Any

from pgtool.lint.context import FileContext, Statement, rel_name
from pgtool.lint.locks import ACCESS_EXCLUSIVE, SHARE, SHARE_UPDATE_EXCLUSIVE
from pgtool.lint.rules import ERROR, WARNING, cases, option_value, rule


@cases(
    fires=[
        "CREATE INDEX i ON orders (a);",
        "create unique index i on public.orders(a);",
        'CREATE\n   INDEX\t"I" ON "Orders" USING gin ("Col");',
        "SELECT 1; CREATE INDEX i ON s.orders (a); SELECT 2;",
    ],
    passes=[
        # comments and string literals that look like unsafe DDL
        "-- CREATE INDEX i ON orders (a);\nSELECT 1;",
        "/* CREATE INDEX i ON orders (a); */ SELECT 1;",
        "SELECT 'CREATE INDEX i ON orders (a)';",
        "INSERT INTO notes VALUES ($$ALTER TABLE t DROP COLUMN x; CREATE INDEX i ON t (a)$$);",
        "CREATE INDEX CONCURRENTLY i ON orders (a);",
        "CREATE TABLE fresh (a int);\nCREATE INDEX i ON fresh (a);",
        'CREATE TABLE "Fresh" (a int); CREATE INDEX i ON "Fresh" (a);',
        "CREATE TABLE s.fresh (a int); CREATE INDEX i ON s.fresh (a);",
        "SELECT * INTO copy FROM orders; CREATE INDEX i ON copy (a);",
        "CREATE TABLE c AS SELECT * FROM orders; CREATE INDEX i ON c (a);",
        "CREATE TABLE p (a int) PARTITION BY RANGE (a); CREATE INDEX ON p (a);",
        "CREATE INDEX measurements_at ON ONLY measurements (at);",
        # function bodies are not run by the migration
        "CREATE PROCEDURE p() LANGUAGE sql AS $$ CREATE INDEX i ON t (a) $$;",
    ],
)
@rule("MIG001", "create-index-not-concurrently", severity=ERROR, lock=SHARE, on=["IndexStmt"])
def create_index(ctx: FileContext, stmt: Statement) -> None:
    """CREATE INDEX without CONCURRENTLY on an existing table

    Fix: use CREATE INDEX CONCURRENTLY, alone in its own migration file
    """
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


@cases(
    fires=["DROP INDEX i;", "drop index if exists s.i, s.j;"],
    passes=["DROP INDEX CONCURRENTLY i;", "DROP TABLE orders;"],
)
@rule("MIG015", "drop-index-not-concurrently", severity=ERROR, lock=ACCESS_EXCLUSIVE, on=["DropStmt"])
def drop_index(ctx: FileContext, stmt: Statement) -> None:
    """DROP INDEX without CONCURRENTLY

    Fix: use DROP INDEX CONCURRENTLY, alone in its own migration file
    """
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


def concurrently(params: list[Any]) -> bool:
    """REINDEX (CONCURRENTLY [bool]) or REINDEX ... CONCURRENTLY."""
    return option_value(params, "concurrently")


@cases(
    fires=[
        "REINDEX INDEX i;",
        "REINDEX TABLE orders;",
        "REINDEX (CONCURRENTLY 0) INDEX i;",
        "REINDEX (CONCURRENTLY off) TABLE orders;",
        "REINDEX SYSTEM app;",
    ],
    passes=[
        "REINDEX (CONCURRENTLY) INDEX i;",
        "REINDEX (CONCURRENTLY true) INDEX i;",
        "REINDEX TABLE CONCURRENTLY orders;",
        "CREATE TABLE fresh (a int); REINDEX TABLE fresh;",
    ],
)
@rule(
    "MIG016",
    "reindex-not-concurrently",
    severity=WARNING,
    lock=f"{SHARE} on the table, {ACCESS_EXCLUSIVE} on the index (CONCURRENTLY: {SHARE_UPDATE_EXCLUSIVE})",
    on=["ReindexStmt"],
)
def reindex(ctx: FileContext, stmt: Statement) -> None:
    """REINDEX without CONCURRENTLY

    Fix: use REINDEX ... CONCURRENTLY, alone in its own migration file
    """
    node = stmt.node
    if concurrently(node.get("params", [])):
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
