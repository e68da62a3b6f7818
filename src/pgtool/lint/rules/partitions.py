"""Partition rules: MIG024 ATTACH PARTITION without a matching validated CHECK, MIG025 DETACH
PARTITION without CONCURRENTLY."""

from __future__ import annotations

from typing import Any

from pgtool.lint.context import FileContext, Statement, rel_name
from pgtool.lint.locks import ACCESS_EXCLUSIVE, SHARE_UPDATE_EXCLUSIVE
from pgtool.lint.rules import ERROR, cases, rule


@cases(
    fires=[
        "ALTER TABLE events ATTACH PARTITION events_2026 FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');",
    ],
    passes=[
        "ALTER TABLE e26 ADD CONSTRAINT b CHECK (at >= '2026-01-01' AND at < '2027-01-01');\n"
        "ALTER TABLE events ATTACH PARTITION e26 FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');",
        "CREATE TABLE e26 (at date); ALTER TABLE events ATTACH PARTITION e26 DEFAULT;",
    ],
)
@rule(
    "MIG024",
    "attach-partition-without-check",
    severity=ERROR,
    lock=f"{ACCESS_EXCLUSIVE} on the partition, {SHARE_UPDATE_EXCLUSIVE} on the parent",
    alter=["AT_AttachPartition"],
)
def attach(ctx: FileContext, stmt: Statement, relation: dict[str, Any], cmd: dict[str, Any]) -> None:
    """ATTACH PARTITION without a matching validated CHECK constraint

    Fix: add a CHECK matching the partition bound (NOT VALID, then VALIDATE) before ATTACH PARTITION
    """
    part = (cmd.get("def") or {}).get("PartitionCmd", {})
    child = part.get("name", {})
    if ctx.is_new(child) or ctx.is_new(relation):
        return
    checks = ctx.run.checks.get(child.get("relname", ""), [])
    key = ctx.run.partition_keys.get(relation.get("relname", ""))
    if any(key is None or key <= columns for columns in checks):
        return
    ctx.report(
        stmt,
        "MIG024",
        f'ATTACH PARTITION "{rel_name(child)}" scans it under ACCESS EXCLUSIVE to prove the partition bound: '
        "no validated CHECK constraint matching the bound was added to it first",
        f'{ACCESS_EXCLUSIVE} on "{rel_name(child)}", {SHARE_UPDATE_EXCLUSIVE} on "{rel_name(relation)}"',
    )


@cases(
    fires=["ALTER TABLE events DETACH PARTITION events_2020;"],
    passes=["ALTER TABLE events DETACH PARTITION e20 CONCURRENTLY;"],
)
@rule(
    "MIG025",
    "detach-partition-not-concurrently",
    severity=ERROR,
    lock=f"{ACCESS_EXCLUSIVE} on the parent (CONCURRENTLY: {SHARE_UPDATE_EXCLUSIVE})",
    alter=["AT_DetachPartition"],
)
def detach(ctx: FileContext, stmt: Statement, relation: dict[str, Any], cmd: dict[str, Any]) -> None:
    """DETACH PARTITION without CONCURRENTLY

    Fix: use DETACH PARTITION ... CONCURRENTLY (PostgreSQL 14+), alone in its own migration file
    """
    part = (cmd.get("def") or {}).get("PartitionCmd", {})
    if part.get("concurrent") or ctx.is_new(relation):
        return
    ctx.report(
        stmt,
        "MIG025",
        f'DETACH PARTITION "{rel_name(part.get("name", {}))}" without CONCURRENTLY takes ACCESS EXCLUSIVE on '
        f'the partitioned table "{rel_name(relation)}"',
        ACCESS_EXCLUSIVE,
    )
