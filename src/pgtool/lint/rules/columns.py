"""Column rules: MIG002 volatile default, MIG003 type change, MIG005 drop, MIG006 rename,
MIG013 NOT NULL without default, MIG014 generated/identity/serial column; plus the constraints an
ADD COLUMN can carry inline (CHECK: MIG004, REFERENCES: MIG009, UNIQUE/PRIMARY KEY: MIG012)."""

from __future__ import annotations

from typing import Any

from pgtool.lint.context import FileContext, Statement, rel_name
from pgtool.lint.locks import ACCESS_EXCLUSIVE, SHARE_ROW_EXCLUSIVE
from pgtool.lint.rules import on_alter, on_statement
from pgtool.lint.volatility import volatile_calls

SERIAL_TYPES = {"serial", "serial2", "serial4", "serial8", "smallserial", "bigserial"}


# The parser spells built-in types by their internal names; show them as users write them.
_TYPE_NAMES = {
    "int2": "smallint",
    "int4": "integer",
    "int8": "bigint",
    "float4": "real",
    "float8": "double precision",
    "bool": "boolean",
    "bpchar": "char",
    "timestamptz": "timestamptz",
}


def _type_name(coldef: dict[str, Any]) -> str:
    names = coldef.get("typeName", {}).get("names", [])
    name = names[-1].get("String", {}).get("sval", "") if names else ""
    return _TYPE_NAMES.get(name, name)


@on_alter("AT_AddColumn")
def add_column(ctx: FileContext, stmt: Statement, relation: dict[str, Any], cmd: dict[str, Any]) -> None:
    if ctx.is_new(relation):
        return
    coldef = (cmd.get("def") or {}).get("ColumnDef", {})
    column = coldef.get("colname", "?")
    table = rel_name(relation)
    where = f'column "{column}" on existing table "{table}"'
    default = None
    not_null = False
    filled = False  # the column gets values for existing rows without a default expression
    for item in coldef.get("constraints", []):
        con = item.get("Constraint", {})
        contype = con.get("contype")
        if contype == "CONSTR_DEFAULT":
            default = con.get("raw_expr")
        elif contype == "CONSTR_NOTNULL":
            not_null = True
        elif contype == "CONSTR_PRIMARY":
            not_null = True
            ctx.report(
                stmt,
                "MIG012",
                f"ADD COLUMN ... PRIMARY KEY builds a unique index for {where}",
                ACCESS_EXCLUSIVE,
            )
        elif contype == "CONSTR_UNIQUE":
            ctx.report(
                stmt, "MIG012", f"ADD COLUMN ... UNIQUE builds a unique index for {where}", ACCESS_EXCLUSIVE
            )
        elif contype == "CONSTR_IDENTITY":
            filled = True
            ctx.report(
                stmt,
                "MIG014",
                f"identity {where} fills every row from a sequence: a full table rewrite",
                ACCESS_EXCLUSIVE,
            )
        elif contype == "CONSTR_GENERATED":
            filled = True
            if con.get("generated_kind", "s") == "s":
                ctx.report(
                    stmt,
                    "MIG014",
                    f"stored generated {where} computes every row: a full table rewrite",
                    ACCESS_EXCLUSIVE,
                )
        elif contype == "CONSTR_FOREIGN":
            ctx.report(
                stmt,
                "MIG009",
                f"ADD COLUMN ... REFERENCES {rel_name(con.get('pktable', {}))} validates {where} at once "
                "and locks both tables",
                SHARE_ROW_EXCLUSIVE,
            )
        elif contype == "CONSTR_CHECK":
            ctx.report(
                stmt,
                "MIG004",
                f"ADD COLUMN with a CHECK constraint scans the table to validate {where}",
                ACCESS_EXCLUSIVE,
            )
    if _type_name(coldef).lower() in SERIAL_TYPES:
        filled = True
        ctx.report(
            stmt,
            "MIG014",
            f"{_type_name(coldef)} {where} fills every row from a sequence: a full table rewrite",
            ACCESS_EXCLUSIVE,
        )
    if default is not None and not _is_null(default):
        if ctx.pg_version < 11:
            ctx.report(
                stmt,
                "MIG002",
                f"ADD COLUMN with a DEFAULT rewrites the whole table before PostgreSQL 11 ({where})",
                ACCESS_EXCLUSIVE,
            )
        else:
            calls = volatile_calls(default, ctx.pg_version, ctx.run.functions)
            if calls:
                name, known = calls[0]
                if known:
                    why = f"{name}() is VOLATILE in PostgreSQL {ctx.pg_version}"
                else:
                    why = (
                        f"{name}() is not a PostgreSQL {ctx.pg_version} built-in nor created with "
                        "STABLE/IMMUTABLE in these migrations, so it is assumed VOLATILE "
                        "(CREATE FUNCTION's default)"
                    )
                ctx.report(
                    stmt,
                    "MIG002",
                    f"ADD COLUMN with a volatile DEFAULT rewrites the whole table: {why} ({where})",
                    ACCESS_EXCLUSIVE,
                )
    if not_null and default is None and not filled:
        ctx.report(
            stmt,
            "MIG013",
            f"ADD COLUMN ... NOT NULL without a DEFAULT fails on any existing row ({where})",
            ACCESS_EXCLUSIVE,
        )


def _is_null(expr: dict[str, Any]) -> bool:
    const = expr.get("A_Const")
    return bool(const) and bool(const.get("isnull"))


@on_alter("AT_AlterColumnType")
def alter_type(ctx: FileContext, stmt: Statement, relation: dict[str, Any], cmd: dict[str, Any]) -> None:
    if ctx.is_new(relation):
        return
    coldef = (cmd.get("def") or {}).get("ColumnDef", {})
    ctx.report(
        stmt,
        "MIG003",
        f'ALTER COLUMN "{cmd.get("name", "?")}" TYPE {_type_name(coldef)} on "{rel_name(relation)}" rewrites '
        "the table and its indexes (unless the change is binary-coercible, e.g. varchar(n) to text)",
        ACCESS_EXCLUSIVE,
    )


@on_alter("AT_DropColumn")
def drop_column(ctx: FileContext, stmt: Statement, relation: dict[str, Any], cmd: dict[str, Any]) -> None:
    if ctx.is_new(relation):
        return
    ctx.report(
        stmt,
        "MIG005",
        f'DROP COLUMN "{cmd.get("name", "?")}" on "{rel_name(relation)}" breaks application code that still '
        "reads or writes it, and cannot be undone",
        ACCESS_EXCLUSIVE,
    )


@on_statement("RenameStmt")
def rename(ctx: FileContext, stmt: Statement) -> None:
    node = stmt.node
    relation = node.get("relation")
    if not relation or ctx.is_new(relation):
        return
    kind = node.get("renameType")
    if kind == "OBJECT_COLUMN":
        ctx.report(
            stmt,
            "MIG006",
            f'RENAME COLUMN "{node.get("subname", "?")}" to "{node.get("newname", "?")}" on '
            f'"{rel_name(relation)}" breaks running application code that uses the old name',
            ACCESS_EXCLUSIVE,
        )
    elif kind == "OBJECT_TABLE" and not ctx.views.contains_rv(relation):
        # A view with the old name, created in the same file, keeps old code working.
        ctx.report(
            stmt,
            "MIG019",
            f'RENAME TABLE "{rel_name(relation)}" to "{node.get("newname", "?")}" breaks running application '
            "code that uses the old name",
            ACCESS_EXCLUSIVE,
        )
