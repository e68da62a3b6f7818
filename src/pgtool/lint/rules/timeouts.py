"""Timeout rules: MIG027 no lock_timeout before a statement that makes other sessions queue, MIG032 no
statement_timeout around a statement that holds its lock for a whole-table scan or rewrite.

The danger of MIG027 is the queue, not the statement: while it waits for its lock behind one long
query, every query that conflicts with that lock waits behind it. Each is reported once per file, at
the first such statement. `state.track` follows SET / RESET / set_config of both timeouts.
"""

from __future__ import annotations

from typing import Any

from pgtool.lint.context import FileContext, Statement, names_from_list, rel_name
from pgtool.lint.locks import ACCESS_EXCLUSIVE, SHARE, SHARE_ROW_EXCLUSIVE, alter_table_cmd_lock
from pgtool.lint.rules import ERROR, WARNING, cases, option_value, rule
from pgtool.lint.rules.indexes import concurrently


def _relations_target(ctx: FileContext, rvs: list[dict[str, Any]]) -> str | None:
    for rv in rvs:
        if not ctx.is_new(rv):
            return rel_name(rv)
    return None


def queue_target(ctx: FileContext, stmt: Statement) -> tuple[str, str] | None:
    """(existing table, lock) when `stmt` takes a lock that makes writers (or everyone) queue."""
    node = stmt.node
    kind = stmt.kind
    if kind == "AlterTableStmt":
        relation = node.get("relation", {})
        if ctx.is_new(relation):
            return None
        locks = [alter_table_cmd_lock(item.get("AlterTableCmd", {})) for item in node.get("cmds", [])]
        for lock in (ACCESS_EXCLUSIVE, SHARE_ROW_EXCLUSIVE):
            if lock in locks:
                return rel_name(relation), lock
        return None
    if kind in ("RenameStmt", "ClusterStmt", "RefreshMatViewStmt"):
        relation = node.get("relation")
        if not relation or ctx.is_new(relation) or node.get("concurrent"):
            return None
        if kind == "RenameStmt" and node.get("renameType") not in ("OBJECT_TABLE", "OBJECT_COLUMN"):
            return None
        return rel_name(relation), ACCESS_EXCLUSIVE
    if kind == "DropStmt":
        remove = node.get("removeType")
        if remove in ("OBJECT_TABLE", "OBJECT_VIEW", "OBJECT_MATVIEW"):
            for obj in node.get("objects", []):
                schema, name = names_from_list(obj.get("List", {}).get("items", []))
                if not ctx.created.contains(schema, name):
                    return (f"{schema}.{name}" if schema else name), ACCESS_EXCLUSIVE
        if remove == "OBJECT_INDEX" and not node.get("concurrent"):
            schema, name = names_from_list(node.get("objects", [{}])[0].get("List", {}).get("items", []))
            return f"the table of index {name}", ACCESS_EXCLUSIVE
        return None
    if kind in ("TruncateStmt", "LockStmt"):
        if kind == "LockStmt" and node.get("mode", 8) != 8:
            return None
        target = _relations_target(ctx, [i.get("RangeVar", {}) for i in node.get("relations", [])])
        return (target, ACCESS_EXCLUSIVE) if target else None
    if kind == "VacuumStmt":
        if option_value(node.get("options", []), "full"):
            rvs = [i.get("VacuumRelation", {}).get("relation", {}) for i in node.get("rels", [])]
            target = _relations_target(ctx, rvs)
            return (target, ACCESS_EXCLUSIVE) if target else None
        return None
    if kind == "CreateStmt" and node.get("partbound"):
        target = _relations_target(ctx, [i.get("RangeVar", {}) for i in node.get("inhRelations", [])])
        return (target, ACCESS_EXCLUSIVE) if target else None
    if kind == "CreateTrigStmt":
        relation = node.get("relation", {})
        return None if ctx.is_new(relation) else (rel_name(relation), SHARE_ROW_EXCLUSIVE)
    if kind == "ReindexStmt" and not concurrently(node.get("params", [])):
        relation = node.get("relation")
        if relation and not ctx.is_new(relation):
            return rel_name(relation), SHARE
    return None


@cases(
    fires=[
        "ALTER TABLE t ADD COLUMN a int;",
        "SET lock_timeout = 0; ALTER TABLE t ADD COLUMN a int;",
        "SET lock_timeout = '1s'; RESET lock_timeout; ALTER TABLE t ADD COLUMN a int;",
        "BEGIN; SET LOCAL lock_timeout = '1s'; COMMIT; ALTER TABLE t ADD COLUMN a int;",
        "CREATE TABLE p_2026 PARTITION OF p FOR VALUES FROM (1) TO (2);",
        "ALTER TABLE items ADD CONSTRAINT fk FOREIGN KEY (o) REFERENCES orders (id) NOT VALID;",
        "CREATE TRIGGER t BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION f();",
        "DROP VIEW orders_v;",
        "REINDEX TABLE orders;",
    ],
    passes=[
        "SET lock_timeout = '2s'; ALTER TABLE t ADD COLUMN a int;",
        "SET lock_timeout TO 2000; ALTER TABLE t ADD COLUMN a int;",
        "SELECT set_config('lock_timeout', '2s', false); ALTER TABLE t ADD COLUMN a int;",
        "CREATE INDEX CONCURRENTLY i ON t (a);",
        "REINDEX INDEX CONCURRENTLY i;",
        "ALTER TABLE t VALIDATE CONSTRAINT c;",
        "CREATE TABLE n (a int); ALTER TABLE n ADD COLUMN b int;",
        "CREATE TABLE n (a int); CREATE TRIGGER t BEFORE UPDATE ON n FOR EACH ROW EXECUTE FUNCTION f();",
        "VACUUM (FULL false) orders;",
    ],
)
@rule(
    "MIG027",
    "lock-timeout",
    severity=ERROR,
    lock=f"{ACCESS_EXCLUSIVE}, {SHARE_ROW_EXCLUSIVE} or {SHARE}, as the statement takes",
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
        "CreateTrigStmt",
        "ReindexStmt",
    ],
)
def missing_lock_timeout(ctx: FileContext, stmt: Statement) -> None:
    """no lock_timeout before a statement that makes other sessions queue

    Fix: SET lock_timeout = '2s' at the top of the file, and retry the migration when it times out
    """
    if ctx.lock_timeout or "MIG027" in ctx.reported_once:
        return
    found = queue_target(ctx, stmt)
    if found is None:
        return
    target, lock = found
    ctx.reported_once.add("MIG027")
    shown = target if target.startswith("the table of") else f'"{target}"'
    who = "every query on the table" if lock == ACCESS_EXCLUSIVE else "every write to the table"
    ctx.report(
        stmt,
        "MIG027",
        f"no lock_timeout is set before this statement takes {lock} on {shown}: while it waits "
        f"behind a long query, {who} queues behind it (reported once per file)",
        lock,
    )


# Rules whose finding means the statement holds ACCESS EXCLUSIVE for a whole-table scan or rewrite.
LONG_UNDER_LOCK = {
    "MIG002",
    "MIG003",
    "MIG004",
    "MIG011",
    "MIG012",
    "MIG014",
    "MIG020",
    "MIG021",
    "MIG022",
    "MIG023",
    "MIG024",
    "MIG026",
}


@cases(
    fires=[
        "SET lock_timeout = '2s'; ALTER TABLE orders ALTER COLUMN total TYPE bigint;",
        "SET lock_timeout = '2s';\n"
        '-- migration-lint: ignore=MIG020 reason="maintenance window"\nVACUUM FULL orders;',
        "SET statement_timeout = 0; SET lock_timeout = '2s'; CLUSTER orders USING orders_pkey;",
    ],
    passes=[
        "SET lock_timeout = '2s'; SET statement_timeout = '15min'; ALTER TABLE orders ALTER a TYPE bigint;",
        "SELECT set_config('statement_timeout', '1h', false); VACUUM FULL orders;",
        "SET lock_timeout = '2s'; ALTER TABLE orders ADD COLUMN note text;",
        "CREATE TABLE t (a int); ALTER TABLE t ALTER COLUMN a TYPE bigint;",
    ],
)
@rule(
    "MIG032",
    "statement-timeout",
    severity=WARNING,
    lock=f"{ACCESS_EXCLUSIVE} for as long as the statement runs",
    on=["*"],
)
def missing_statement_timeout(ctx: FileContext, stmt: Statement) -> None:
    """no statement_timeout around a scan or rewrite under ACCESS EXCLUSIVE

    Fix: SET statement_timeout (e.g. '15min') in the file, sized to the longest outage you accept
    """
    if "statement_timeout" in ctx.timeouts or "MIG032" in ctx.reported_once:
        return
    rules = set()
    for found, rule_id, *_ in reversed(ctx.raw):  # this statement's findings are the latest ones
        if found is not stmt:
            break
        rules.add(rule_id)
    long_rules = sorted(rules & LONG_UNDER_LOCK)
    if not long_rules:
        return
    ctx.reported_once.add("MIG032")
    ctx.report(
        stmt,
        "MIG032",
        f"no statement_timeout is set: this statement ({', '.join(long_rules)}) holds its lock for as long "
        "as it scans or rewrites the table, with nothing to stop it (reported once per file)",
        ACCESS_EXCLUSIVE,
    )
