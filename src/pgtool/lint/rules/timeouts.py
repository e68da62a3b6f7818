"""MIG027: a statement that takes ACCESS EXCLUSIVE on an existing table with no lock_timeout set.

The danger is the queue, not the statement: while it waits for its lock behind one long query, every
other query on the table waits behind it. Reported once per file, at the first such statement.
"""

from __future__ import annotations

from pgtool.lint.context import FileContext, Statement, names_from_list, rel_name
from pgtool.lint.locks import ACCESS_EXCLUSIVE, alter_table_cmd_lock
from pgtool.lint.rules import ERROR, option_value, rule


def access_exclusive_target(ctx: FileContext, stmt: Statement) -> str | None:
    """The existing table `stmt` takes ACCESS EXCLUSIVE on, or None."""
    node = stmt.node
    kind = stmt.kind
    if kind == "AlterTableStmt":
        relation = node.get("relation", {})
        if ctx.is_new(relation):
            return None
        for item in node.get("cmds", []):
            if alter_table_cmd_lock(item.get("AlterTableCmd", {})) == ACCESS_EXCLUSIVE:
                return rel_name(relation)
        return None
    if kind in ("RenameStmt", "ClusterStmt", "RefreshMatViewStmt"):
        relation = node.get("relation")
        if not relation or ctx.is_new(relation) or node.get("concurrent"):
            return None
        if kind == "RenameStmt" and node.get("renameType") not in ("OBJECT_TABLE", "OBJECT_COLUMN"):
            return None
        return rel_name(relation)
    if kind == "DropStmt":
        if node.get("removeType") == "OBJECT_TABLE":
            for obj in node.get("objects", []):
                schema, name = names_from_list(obj.get("List", {}).get("items", []))
                if not ctx.created.contains(schema, name):
                    return f"{schema}.{name}" if schema else name
        if node.get("removeType") == "OBJECT_INDEX" and not node.get("concurrent"):
            schema, name = names_from_list(node.get("objects", [{}])[0].get("List", {}).get("items", []))
            return f"the table of index {name}"
        return None
    if kind in ("TruncateStmt", "LockStmt"):
        if kind == "LockStmt" and node.get("mode", 8) != 8:
            return None
        for item in node.get("relations", []):
            rv = item.get("RangeVar", {})
            if not ctx.is_new(rv):
                return rel_name(rv)
        return None
    if kind == "VacuumStmt":
        if option_value(node.get("options", []), "full"):
            for item in node.get("rels", []):
                rv = item.get("VacuumRelation", {}).get("relation", {})
                if not ctx.is_new(rv):
                    return rel_name(rv)
        return None
    if kind == "CreateStmt" and node.get("partbound"):
        for item in node.get("inhRelations", []):
            rv = item.get("RangeVar", {})
            if not ctx.is_new(rv):
                return rel_name(rv)
    return None


@rule(
    "MIG027",
    "lock-timeout",
    severity=ERROR,
    title="no lock_timeout before a statement that takes ACCESS EXCLUSIVE",
    lock=ACCESS_EXCLUSIVE,
    fix="SET lock_timeout = '2s' at the top of the file, and retry the migration when it times out",
    on=[
        "AlterTableStmt",
        "RenameStmt",
        "ClusterStmt",
        "RefreshMatViewStmt",
        "DropStmt",
        "TruncateStmt",
        "LockStmt",
        "VacuumStmt",
        "CreateStmt",
    ],
    fires=[
        "ALTER TABLE t ADD COLUMN a int;",
        "SET lock_timeout = 0; ALTER TABLE t ADD COLUMN a int;",
        "SET lock_timeout = '1s'; RESET lock_timeout; ALTER TABLE t ADD COLUMN a int;",
        "BEGIN; SET LOCAL lock_timeout = '1s'; COMMIT; ALTER TABLE t ADD COLUMN a int;",
        "CREATE TABLE p_2026 PARTITION OF p FOR VALUES FROM (1) TO (2);",
    ],
    passes=[
        "SET lock_timeout = '2s'; ALTER TABLE t ADD COLUMN a int;",
        "SET lock_timeout TO 2000; ALTER TABLE t ADD COLUMN a int;",
        "SELECT set_config('lock_timeout', '2s', false); ALTER TABLE t ADD COLUMN a int;",
        "CREATE INDEX CONCURRENTLY i ON t (a);",
        "ALTER TABLE t VALIDATE CONSTRAINT c;",
        "CREATE TABLE n (a int); ALTER TABLE n ADD COLUMN b int;",
        "VACUUM (FULL false) orders;",
    ],
)
def missing_lock_timeout(ctx: FileContext, stmt: Statement) -> None:
    if ctx.lock_timeout or ctx.lock_timeout_reported:
        return
    target = access_exclusive_target(ctx, stmt)
    if target is None:
        return
    ctx.lock_timeout_reported = True
    shown = target if target.startswith("the table of") else f'"{target}"'
    ctx.report(
        stmt,
        "MIG027",
        f"no lock_timeout is set before this statement takes ACCESS EXCLUSIVE on {shown}: while it waits "
        "behind a long query, every query on the table queues behind it (reported once per file)",
        ACCESS_EXCLUSIVE,
    )
