"""Whole-table rules: MIG008 LOCK TABLE, MIG017 DROP TABLE, MIG018 TRUNCATE, MIG020 VACUUM FULL,
MIG021 CLUSTER, MIG022 SET TABLESPACE, MIG023 SET LOGGED/UNLOGGED, MIG026 REFRESH MATERIALIZED VIEW."""

from __future__ import annotations

from typing import Any

from pgtool.lint.context import FileContext, Statement, names_from_list, rel_name
from pgtool.lint.locks import ACCESS_EXCLUSIVE, MODE_NAMES
from pgtool.lint.rules import on_alter, on_statement, option_value


@on_statement("LockStmt")
def lock_table(ctx: FileContext, stmt: Statement) -> None:
    node = stmt.node
    relations = [r.get("RangeVar", {}) for r in node.get("relations", [])]
    if relations and all(ctx.is_new(r) for r in relations):
        return
    mode = MODE_NAMES.get(node.get("mode", 8), ACCESS_EXCLUSIVE)
    names = ", ".join(f'"{rel_name(r)}"' for r in relations)
    ctx.report(
        stmt,
        "MIG008",
        f"LOCK TABLE {names} IN {mode} MODE holds the lock until the migration commits; everything that "
        "conflicts with it queues behind",
        mode,
    )


@on_statement("DropStmt")
def drop_table(ctx: FileContext, stmt: Statement) -> None:
    node = stmt.node
    if node.get("removeType") != "OBJECT_TABLE":
        return
    names = [names_from_list(o.get("List", {}).get("items", [])) for o in node.get("objects", [])]
    old = [f"{s}.{n}" if s else n for s, n in names if not ctx.created.contains(s, n)]
    if not old:
        return
    listed = ", ".join(f'"{n}"' for n in old)
    ctx.report(
        stmt,
        "MIG017",
        f"DROP TABLE {listed} destroys data for good and breaks any code still using it",
        ACCESS_EXCLUSIVE,
    )


@on_statement("TruncateStmt")
def truncate(ctx: FileContext, stmt: Statement) -> None:
    relations = [r.get("RangeVar", {}) for r in stmt.node.get("relations", [])]
    old = [r for r in relations if not ctx.is_new(r)]
    if not old:
        return
    listed = ", ".join(f'"{rel_name(r)}"' for r in old)
    cascade = (
        " CASCADE (and every table referencing it)" if stmt.node.get("behavior") == "DROP_CASCADE" else ""
    )
    ctx.report(stmt, "MIG018", f"TRUNCATE {listed}{cascade} deletes every row", ACCESS_EXCLUSIVE)


@on_statement("VacuumStmt")
def vacuum_full(ctx: FileContext, stmt: Statement) -> None:
    node = stmt.node
    if not node.get("is_vacuumcmd"):
        return
    if not option_value(node.get("options", []), "full"):
        return
    relations = [r.get("VacuumRelation", {}).get("relation", {}) for r in node.get("rels", [])]
    if relations and all(ctx.is_new(r) for r in relations):
        return
    target = ", ".join(f'"{rel_name(r)}"' for r in relations) or "every table in the database"
    ctx.report(stmt, "MIG020", f"VACUUM FULL rewrites {target} under ACCESS EXCLUSIVE", ACCESS_EXCLUSIVE)


@on_statement("ClusterStmt")
def cluster(ctx: FileContext, stmt: Statement) -> None:
    relation = stmt.node.get("relation")
    if relation and ctx.is_new(relation):
        return
    target = f'"{rel_name(relation)}"' if relation else "every previously clustered table"
    ctx.report(stmt, "MIG021", f"CLUSTER rewrites {target} under ACCESS EXCLUSIVE", ACCESS_EXCLUSIVE)


@on_alter("AT_SetTableSpace")
def set_tablespace(ctx: FileContext, stmt: Statement, relation: dict[str, Any], cmd: dict[str, Any]) -> None:
    if ctx.is_new(relation):
        return
    ctx.report(
        stmt,
        "MIG022",
        f'SET TABLESPACE "{cmd.get("name", "?")}" copies "{rel_name(relation)}" file by file '
        "under ACCESS EXCLUSIVE",
        ACCESS_EXCLUSIVE,
    )


@on_alter("AT_SetLogged", "AT_SetUnLogged")
def set_logged(ctx: FileContext, stmt: Statement, relation: dict[str, Any], cmd: dict[str, Any]) -> None:
    if ctx.is_new(relation):
        return
    what = "SET LOGGED" if cmd.get("subtype") == "AT_SetLogged" else "SET UNLOGGED"
    ctx.report(
        stmt,
        "MIG023",
        f'{what} rewrites "{rel_name(relation)}" (and writes it all to WAL) under ACCESS EXCLUSIVE',
        ACCESS_EXCLUSIVE,
    )


@on_statement("RefreshMatViewStmt")
def refresh_matview(ctx: FileContext, stmt: Statement) -> None:
    node = stmt.node
    relation = node.get("relation", {})
    if node.get("concurrent") or ctx.is_new(relation):
        return
    ctx.report(
        stmt,
        "MIG026",
        f'REFRESH MATERIALIZED VIEW "{rel_name(relation)}" without CONCURRENTLY blocks every read of it '
        "until the refresh finishes",
        ACCESS_EXCLUSIVE,
    )
