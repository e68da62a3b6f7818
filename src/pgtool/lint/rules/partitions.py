"""Partition rules: MIG024 ATTACH PARTITION without a matching validated CHECK, MIG025 DETACH
PARTITION without CONCURRENTLY."""

from __future__ import annotations

from typing import Any

from pgtool.lint.context import FileContext, Statement, rel_name
from pgtool.lint.locks import ACCESS_EXCLUSIVE, SHARE_UPDATE_EXCLUSIVE
from pgtool.lint.rules import on_alter


@on_alter("AT_AttachPartition")
def attach(ctx: FileContext, stmt: Statement, relation: dict[str, Any], cmd: dict[str, Any]) -> None:
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


@on_alter("AT_DetachPartition")
def detach(ctx: FileContext, stmt: Statement, relation: dict[str, Any], cmd: dict[str, Any]) -> None:
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
