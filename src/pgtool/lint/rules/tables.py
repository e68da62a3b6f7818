"""Whole-table rules: MIG008 LOCK TABLE, MIG017 DROP TABLE, MIG018 TRUNCATE, MIG020 VACUUM FULL,
MIG021 CLUSTER, MIG022 SET TABLESPACE, MIG023 SET LOGGED/UNLOGGED, MIG026 REFRESH MATERIALIZED VIEW."""

from __future__ import annotations

from typing import Any

from pgtool.lint.context import FileContext, Statement, names_from_list, rel_name
from pgtool.lint.locks import ACCESS_EXCLUSIVE, MODE_NAMES
from pgtool.lint.rules import ERROR, cases, existing_table_rule, option_value, rule


@cases(
    fires=["LOCK TABLE orders;", "lock orders in share mode;"],
    passes=["CREATE TABLE fresh (a int); LOCK TABLE fresh;"],
)
@rule(
    "MIG008",
    "lock-table",
    severity=ERROR,
    lock="the mode named (ACCESS EXCLUSIVE by default)",
    on=["LockStmt"],
)
def lock_table(ctx: FileContext, stmt: Statement) -> None:
    """LOCK TABLE

    Fix: drop the explicit lock; rely on the statement's own lock with a short lock_timeout
    """
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


@cases(
    fires=["DROP TABLE orders;", "DROP TABLE IF EXISTS s.orders CASCADE;"],
    passes=["CREATE TABLE tmp (a int); DROP TABLE tmp;", "DROP VIEW v;"],
)
@rule("MIG017", "drop-table", severity=ERROR, lock=ACCESS_EXCLUSIVE, on=["DropStmt"])
def drop_table(ctx: FileContext, stmt: Statement) -> None:
    """DROP TABLE

    Fix: stop using the table first; drop it in a later release, with a short lock_timeout
    """
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


@cases(
    fires=["TRUNCATE orders;", "TRUNCATE TABLE a, b CASCADE;"],
    passes=["CREATE TABLE tmp (a int); TRUNCATE tmp;"],
)
@rule("MIG018", "truncate", severity=ERROR, lock=ACCESS_EXCLUSIVE, on=["TruncateStmt"])
def truncate(ctx: FileContext, stmt: Statement) -> None:
    """TRUNCATE

    Fix: delete in batches, or drop the table once nothing uses it
    """
    relations = [r.get("RangeVar", {}) for r in stmt.node.get("relations", [])]
    old = [r for r in relations if not ctx.is_new(r)]
    if not old:
        return
    listed = ", ".join(f'"{rel_name(r)}"' for r in old)
    cascade = (
        " CASCADE (and every table referencing it)" if stmt.node.get("behavior") == "DROP_CASCADE" else ""
    )
    ctx.report(stmt, "MIG018", f"TRUNCATE {listed}{cascade} deletes every row", ACCESS_EXCLUSIVE)


@cases(
    fires=["VACUUM FULL orders;", "VACUUM (FULL, ANALYZE) orders;", "VACUUM (FULL true) orders;"],
    passes=[
        "VACUUM (ANALYZE) orders;",
        "ANALYZE orders;",
        "VACUUM (FULL FALSE) orders;",
        "VACUUM (FULL off) orders;",
        "VACUUM (FULL 0) orders;",
        "VACUUM (FULL 'false') orders;",
    ],
)
@rule("MIG020", "vacuum-full", severity=ERROR, lock=ACCESS_EXCLUSIVE, on=["VacuumStmt"])
def vacuum_full(ctx: FileContext, stmt: Statement) -> None:
    """VACUUM FULL rewrites the table under ACCESS EXCLUSIVE

    Fix: use plain VACUUM, or an online repack tool (pg_repack / pg_squeeze) off-peak
    """
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


@cases(
    fires=["CLUSTER orders USING orders_pkey;", "CLUSTER;"],
    passes=["CREATE TABLE fresh (a int); CLUSTER fresh USING fresh_a;", "ALTER TABLE orders CLUSTER ON i;"],
)
@rule("MIG021", "cluster", severity=ERROR, lock=ACCESS_EXCLUSIVE, on=["ClusterStmt"])
def cluster(ctx: FileContext, stmt: Statement) -> None:
    """CLUSTER rewrites the table under ACCESS EXCLUSIVE

    Fix: use an online repack tool (pg_repack --order-by) or leave the ordering alone
    """
    relation = stmt.node.get("relation")
    if relation and ctx.is_new(relation):
        return
    target = f'"{rel_name(relation)}"' if relation else "every previously clustered table"
    ctx.report(stmt, "MIG021", f"CLUSTER rewrites {target} under ACCESS EXCLUSIVE", ACCESS_EXCLUSIVE)


@cases(
    fires=["ALTER TABLE orders SET TABLESPACE fast;", "ALTER INDEX orders_pkey SET TABLESPACE fast;"],
    passes=["CREATE TABLE fresh (a int); ALTER TABLE fresh SET TABLESPACE fast;"],
)
@existing_table_rule(
    "MIG022", "set-tablespace", severity=ERROR, lock=ACCESS_EXCLUSIVE, alter=["AT_SetTableSpace"]
)
def set_tablespace(relation: dict[str, Any], cmd: dict[str, Any]) -> str:
    """SET TABLESPACE copies the relation under ACCESS EXCLUSIVE

    Fix: create a new index CONCURRENTLY in the target tablespace, or move data with an online tool
    """
    return (
        f'SET TABLESPACE "{cmd.get("name", "?")}" copies "{rel_name(relation)}" file by file '
        "under ACCESS EXCLUSIVE"
    )


@cases(
    fires=["ALTER TABLE orders SET LOGGED;", "ALTER TABLE orders SET UNLOGGED;"],
    passes=["CREATE UNLOGGED TABLE fresh (a int); ALTER TABLE fresh SET LOGGED;"],
)
@existing_table_rule(
    "MIG023", "set-logged", severity=ERROR, lock=ACCESS_EXCLUSIVE, alter=["AT_SetLogged", "AT_SetUnLogged"]
)
def set_logged(relation: dict[str, Any], cmd: dict[str, Any]) -> str:
    """SET LOGGED / SET UNLOGGED rewrites the table

    Fix: create the table with the right persistence and copy data in batches
    """
    what = "SET LOGGED" if cmd.get("subtype") == "AT_SetLogged" else "SET UNLOGGED"
    return f'{what} rewrites "{rel_name(relation)}" (and writes it all to WAL) under ACCESS EXCLUSIVE'


@cases(
    fires=["REFRESH MATERIALIZED VIEW daily;"],
    passes=[
        "REFRESH MATERIALIZED VIEW CONCURRENTLY daily;",
        "CREATE MATERIALIZED VIEW mv AS SELECT 1 AS a WITH NO DATA; REFRESH MATERIALIZED VIEW mv;",
    ],
)
@rule(
    "MIG026",
    "refresh-matview-not-concurrently",
    severity=ERROR,
    lock=f"{ACCESS_EXCLUSIVE} (CONCURRENTLY: EXCLUSIVE)",
    on=["RefreshMatViewStmt"],
)
def refresh_matview(ctx: FileContext, stmt: Statement) -> None:
    """REFRESH MATERIALIZED VIEW without CONCURRENTLY

    Fix: add a UNIQUE index on plain columns and use REFRESH MATERIALIZED VIEW CONCURRENTLY
    """
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
