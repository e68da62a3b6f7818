"""MIG030: an enum value used in the transaction that added it.

PostgreSQL 12+ lets ALTER TYPE ... ADD VALUE run in a transaction block, but refuses to use the new
value before that transaction commits ("unsafe use of new value"). PostgreSQL 17+ exempts a type
created in the same transaction (15 refuses it too, checked). A migration file is one transaction
unless it says COMMIT. The values added are tracked in `state.track`.
"""

from __future__ import annotations

from typing import Any

from pgtool.lint.context import FileContext, Statement
from pgtool.lint.parsetree import stop_at, walk
from pgtool.lint.rules import ERROR, cases, rule


def _string_constants(node: Any) -> set[str]:
    found: set[str] = set()
    for item in walk(node, stop_at("A_Const")):
        const = item.get("A_Const")
        if const is not None and "sval" in const:
            found.add(const["sval"].get("sval", ""))
    return found


@cases(
    fires=[
        "ALTER TYPE status ADD VALUE 'shipped'; UPDATE orders SET status = 'shipped' WHERE id = 1;",
        "ALTER TYPE s.status ADD VALUE IF NOT EXISTS 'shipped' AFTER 'paid';\n"
        "INSERT INTO orders (status) VALUES ('shipped'::s.status);",
        "BEGIN; ALTER TYPE status ADD VALUE 'x'; SELECT 'x'::status; COMMIT;",
    ],
    passes=[
        "ALTER TYPE status ADD VALUE 'shipped';",
        "ALTER TYPE status ADD VALUE 'shipped'; COMMIT; UPDATE orders SET status = 'shipped' WHERE id = 1;",
        "ALTER TYPE status ADD VALUE 'a'; ALTER TYPE status ADD VALUE 'b' AFTER 'a';",
        "ALTER TYPE status RENAME VALUE 'a' TO 'b'; SELECT 'b'::status;",
    ],
)
@rule(
    "MIG030", "enum-value-used-in-its-transaction", severity=ERROR, lock="none: the statement fails", on=["*"]
)
def new_value_used(ctx: FileContext, stmt: Statement) -> None:
    """enum value used in the transaction that added it

    Fix: add the value with ALTER TYPE ... ADD VALUE in one migration file, use it in a later one
    """
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
