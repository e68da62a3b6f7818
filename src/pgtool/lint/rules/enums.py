"""MIG030: an enum value used in the transaction that added it.

PostgreSQL 12+ lets ALTER TYPE ... ADD VALUE run in a transaction block, but refuses to use the new
value before that transaction commits ("unsafe use of new value"). PostgreSQL 17+ exempts a type created
in the same transaction (15 refuses it too, checked). A migration file is one transaction unless it
says COMMIT.
"""

from __future__ import annotations

from typing import Any

from pgtool.lint.context import FileContext, Statement
from pgtool.lint.rules import on_statement


def _type_name(items: list[Any]) -> str:
    return ".".join(i.get("String", {}).get("sval", "") for i in items)


@on_statement("CreateEnumStmt")
def track_new_type(ctx: FileContext, stmt: Statement) -> None:
    ctx.tx_enum_types.add(_type_name(stmt.node.get("typeName", [])))


@on_statement("AlterEnumStmt")
def track_new_value(ctx: FileContext, stmt: Statement) -> None:
    node = stmt.node
    name = _type_name(node.get("typeName", []))
    if node.get("oldVal") or stmt.in_do or (name in ctx.tx_enum_types and ctx.pg_version >= 17):
        return
    ctx.tx_enum_values[node.get("newVal", "")] = name


def _string_constants(node: Any) -> set[str]:
    found: set[str] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            const = item.get("A_Const")
            if const is not None and "sval" in const:
                found.add(const["sval"].get("sval", ""))
                continue
            stack.extend(item.values())
    return found


@on_statement("*")
def new_value_used(ctx: FileContext, stmt: Statement) -> None:
    if not ctx.tx_enum_values or stmt.kind in ("AlterEnumStmt", "TransactionStmt"):
        return
    for value in sorted(_string_constants(stmt.node) & ctx.tx_enum_values.keys()):
        ctx.report(
            stmt,
            "MIG030",
            f"'{value}' was added to enum {ctx.tx_enum_values[value]} earlier in this transaction: "
            "PostgreSQL refuses to use a new enum value before the transaction that added it commits",
            "none: the statement fails",
        )
