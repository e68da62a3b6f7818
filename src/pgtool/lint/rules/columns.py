"""Column rules: MIG002 volatile default, MIG003 type change, MIG005 drop, MIG006 rename column,
MIG013 NOT NULL without default, MIG014 generated/identity/serial column, MIG019 rename table. The
constraints an ADD COLUMN can carry inline are checked by the constraint rules."""

from __future__ import annotations

from typing import Any

from pgtool.lint.context import FileContext, Statement, rel_name
from pgtool.lint.locks import ACCESS_EXCLUSIVE
from pgtool.lint.rules import ERROR, cases, existing_table_rule, rule
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


def type_name(coldef: dict[str, Any]) -> str:
    """The column's type as users write it (`integer`, `bigserial`, `my_type`)."""
    names = coldef.get("typeName", {}).get("names", [])
    name = names[-1].get("String", {}).get("sval", "") if names else ""
    return _TYPE_NAMES.get(name, name)


def added_column(ctx: FileContext, relation: dict[str, Any], cmd: dict[str, Any]) -> dict[str, Any] | None:
    """The ColumnDef an ADD COLUMN adds to an existing table (None for a table new in this file)."""
    if ctx.is_new(relation):
        return None
    column: dict[str, Any] = (cmd.get("def") or {}).get("ColumnDef", {})
    return column


def constraints_of(coldef: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The column's inline constraints by type (CONSTR_DEFAULT, CONSTR_NOTNULL, ...)."""
    return {
        c["Constraint"].get("contype", ""): c["Constraint"]
        for c in coldef.get("constraints", [])
        if "Constraint" in c
    }


def where(relation: dict[str, Any], coldef: dict[str, Any]) -> str:
    return f'column "{coldef.get("colname", "?")}" on existing table "{rel_name(relation)}"'


def _is_null(expr: dict[str, Any]) -> bool:
    const = expr.get("A_Const")
    return isinstance(const, dict) and bool(const.get("isnull"))


@cases(
    fires=[
        "ALTER TABLE orders ADD COLUMN r float8 DEFAULT random();",
        "ALTER TABLE orders ADD COLUMN u uuid DEFAULT gen_random_uuid();",
        "ALTER TABLE orders ADD COLUMN u uuid NOT NULL DEFAULT gen_random_uuid();",
        "ALTER TABLE orders ADD COLUMN t timestamptz DEFAULT clock_timestamp();",
        "ALTER TABLE orders ADD COLUMN n bigint DEFAULT nextval('orders_seq');",
        "ALTER TABLE orders ADD COLUMN n text DEFAULT pg_catalog.timeofday();",
        "ALTER TABLE orders ADD COLUMN n text DEFAULT 'x' || random()::text;",
        "ALTER TABLE orders ADD COLUMN n int DEFAULT my_func();",
    ],
    passes=[
        "ALTER TABLE orders ADD COLUMN a timestamptz DEFAULT now();",
        "ALTER TABLE orders ADD COLUMN a timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP;",
        "ALTER TABLE orders ADD COLUMN a text DEFAULT 'new';",
        "ALTER TABLE orders ADD COLUMN a int DEFAULT 0;",
        "ALTER TABLE orders ADD COLUMN a date DEFAULT '2026-01-01'::date;",
        "ALTER TABLE orders ADD COLUMN a timestamptz DEFAULT statement_timestamp();",
        "ALTER TABLE orders ADD COLUMN a text DEFAULT NULL;",
        "ALTER TABLE orders ADD COLUMN a text DEFAULT lower('X');",
        "ALTER TABLE orders ALTER COLUMN a SET DEFAULT gen_random_uuid();",
        "CREATE TABLE fresh (id int); ALTER TABLE fresh ADD COLUMN u uuid DEFAULT gen_random_uuid();",
        "CREATE TABLE t (u uuid DEFAULT gen_random_uuid());",
        "CREATE FUNCTION tenant() RETURNS int STABLE LANGUAGE sql AS 'select 1';\n"
        "ALTER TABLE orders ADD COLUMN tenant int DEFAULT tenant();",
        "ALTER TYPE addr ADD ATTRIBUTE u uuid;",
    ],
)
@rule("MIG002", "add-column-volatile-default", severity=ERROR, lock=ACCESS_EXCLUSIVE, alter=["AT_AddColumn"])
def volatile_default(
    ctx: FileContext, stmt: Statement, relation: dict[str, Any], cmd: dict[str, Any]
) -> None:
    """ADD COLUMN with a volatile default rewrites the table

    Fix: add the column without a default (or with a constant), SET DEFAULT, then backfill in batches
    """
    coldef = added_column(ctx, relation, cmd)
    default = (constraints_of(coldef).get("CONSTR_DEFAULT") or {}).get("raw_expr") if coldef else None
    if coldef is None or default is None or _is_null(default):
        return
    if ctx.pg_version < 11:
        ctx.report(
            stmt,
            "MIG002",
            "ADD COLUMN with a DEFAULT rewrites the whole table before PostgreSQL 11 "
            f"({where(relation, coldef)})",
            ACCESS_EXCLUSIVE,
        )
        return
    calls = volatile_calls(default, ctx.pg_version, ctx.run.functions)
    if not calls:
        return
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
        f"ADD COLUMN with a volatile DEFAULT rewrites the whole table: {why} ({where(relation, coldef)})",
        ACCESS_EXCLUSIVE,
    )


def _filled_by(coldef: dict[str, Any]) -> str | None:
    """How an added column gets a value in every existing row without a DEFAULT, if it does."""
    cons = constraints_of(coldef)
    if "CONSTR_IDENTITY" in cons:
        return "identity"
    generated = cons.get("CONSTR_GENERATED")
    if generated is not None:
        return "stored generated" if generated.get("generated_kind", "s") == "s" else "virtual"
    if type_name(coldef).lower() in SERIAL_TYPES:
        return type_name(coldef)
    return None


@cases(
    fires=[
        "ALTER TABLE orders ADD COLUMN a int NOT NULL;",
        "ALTER TABLE orders ADD COLUMN a int PRIMARY KEY;",
    ],
    passes=[
        "ALTER TABLE orders ADD COLUMN a int NOT NULL DEFAULT 0;",
        "ALTER TABLE orders ADD COLUMN a int;",
        "ALTER TABLE orders ADD COLUMN a bigint NOT NULL GENERATED ALWAYS AS IDENTITY;",
        "CREATE TABLE fresh (id int); ALTER TABLE fresh ADD COLUMN a int NOT NULL;",
    ],
)
@rule(
    "MIG013",
    "add-column-not-null-without-default",
    severity=ERROR,
    lock=ACCESS_EXCLUSIVE,
    alter=["AT_AddColumn"],
)
def not_null_without_default(
    ctx: FileContext, stmt: Statement, relation: dict[str, Any], cmd: dict[str, Any]
) -> None:
    """ADD COLUMN ... NOT NULL without a default

    Fix: add the column nullable (or with a constant DEFAULT), backfill, then enforce NOT NULL safely
    """
    coldef = added_column(ctx, relation, cmd)
    if coldef is None:
        return
    cons = constraints_of(coldef)
    not_null = "CONSTR_NOTNULL" in cons or "CONSTR_PRIMARY" in cons
    if not_null and "CONSTR_DEFAULT" not in cons and _filled_by(coldef) is None:
        ctx.report(
            stmt,
            "MIG013",
            "ADD COLUMN ... NOT NULL without a DEFAULT fails on any existing row "
            f"({where(relation, coldef)})",
            ACCESS_EXCLUSIVE,
        )


@cases(
    fires=[
        "ALTER TABLE orders ADD COLUMN id2 bigint GENERATED ALWAYS AS IDENTITY;",
        "ALTER TABLE orders ADD COLUMN n bigserial;",
        "ALTER TABLE orders ADD COLUMN g int GENERATED ALWAYS AS (a * 2) STORED;",
    ],
    passes=[
        "ALTER TABLE orders ADD COLUMN g int GENERATED ALWAYS AS (a * 2) VIRTUAL;",
        "CREATE TABLE fresh (id bigserial); ALTER TABLE fresh ADD COLUMN n serial;",
    ],
)
@rule("MIG014", "add-filled-column", severity=ERROR, lock=ACCESS_EXCLUSIVE, alter=["AT_AddColumn"])
def filled_column(ctx: FileContext, stmt: Statement, relation: dict[str, Any], cmd: dict[str, Any]) -> None:
    """stored generated, identity or serial column added to an existing table

    Fix: add a plain nullable column, fill it in batches, then attach the default / sequence
    """
    coldef = added_column(ctx, relation, cmd)
    how = _filled_by(coldef) if coldef is not None else None
    if coldef is None or how is None or how == "virtual":
        return
    computes = "computes every row" if how == "stored generated" else "fills every row from a sequence"
    ctx.report(
        stmt,
        "MIG014",
        f"{how} {where(relation, coldef)} {computes}: a full table rewrite",
        ACCESS_EXCLUSIVE,
    )


@cases(
    fires=[
        "ALTER TABLE orders ALTER COLUMN total TYPE numeric(14,2);",
        "alter table orders alter total set data type bigint using total::bigint;",
    ],
    passes=["CREATE TABLE fresh (a int); ALTER TABLE fresh ALTER COLUMN a TYPE bigint;"],
)
@existing_table_rule(
    "MIG003", "alter-column-type", severity=ERROR, lock=ACCESS_EXCLUSIVE, alter=["AT_AlterColumnType"]
)
def alter_type(relation: dict[str, Any], cmd: dict[str, Any]) -> str:
    """ALTER COLUMN ... TYPE rewrites the table

    Fix: add a new column, backfill in batches, switch readers and writers, then drop the old one
    """
    coldef = (cmd.get("def") or {}).get("ColumnDef", {})
    return (
        f'ALTER COLUMN "{cmd.get("name", "?")}" TYPE {type_name(coldef)} on "{rel_name(relation)}" rewrites '
        "the table and its indexes (unless the change is binary-coercible, e.g. varchar(n) to text)"
    )


@cases(
    fires=["ALTER TABLE orders DROP COLUMN legacy;", "ALTER TABLE orders DROP legacy CASCADE;"],
    passes=[
        "CREATE TABLE fresh (a int, b int); ALTER TABLE fresh DROP COLUMN b;",
        "ALTER TABLE orders DROP CONSTRAINT c;",
        "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN ALTER TABLE t DROP COLUMN x; END $$;",
    ],
)
@existing_table_rule("MIG005", "drop-column", severity=ERROR, lock=ACCESS_EXCLUSIVE, alter=["AT_DropColumn"])
def drop_column(relation: dict[str, Any], cmd: dict[str, Any]) -> str:
    """DROP COLUMN

    Fix: stop reading and writing the column in the application first, then drop it in a later release
    """
    return (
        f'DROP COLUMN "{cmd.get("name", "?")}" on "{rel_name(relation)}" breaks application code that still '
        "reads or writes it, and cannot be undone"
    )


@cases(
    fires=["ALTER TABLE orders RENAME COLUMN a TO b;", "ALTER TABLE orders RENAME a TO b;"],
    passes=[
        "ALTER TABLE orders RENAME CONSTRAINT a TO b;",
        "CREATE TABLE fresh (a int); ALTER TABLE fresh RENAME COLUMN a TO b;",
    ],
)
@rule("MIG006", "rename-column", severity=ERROR, lock=ACCESS_EXCLUSIVE, on=["RenameStmt"])
def rename_column(ctx: FileContext, stmt: Statement) -> None:
    """RENAME COLUMN breaks running application code

    Fix: add the new column (or a view), dual-write, migrate readers, then drop the old name
    """
    node = stmt.node
    relation = node.get("relation")
    if node.get("renameType") != "OBJECT_COLUMN" or not relation or ctx.is_new(relation):
        return
    ctx.report(
        stmt,
        "MIG006",
        f'RENAME COLUMN "{node.get("subname", "?")}" to "{node.get("newname", "?")}" on '
        f'"{rel_name(relation)}" breaks running application code that uses the old name',
        ACCESS_EXCLUSIVE,
    )


@cases(
    fires=["ALTER TABLE orders RENAME TO orders_old;"],
    passes=["ALTER TABLE orders RENAME TO purchases; CREATE VIEW orders AS SELECT * FROM purchases;"],
)
@rule("MIG019", "rename-table", severity=ERROR, lock=ACCESS_EXCLUSIVE, on=["RenameStmt"])
def rename_table(ctx: FileContext, stmt: Statement) -> None:
    """RENAME TABLE breaks running application code

    Fix: rename, then create a view with the old name until every reader has moved
    """
    node = stmt.node
    relation = node.get("relation")
    if node.get("renameType") != "OBJECT_TABLE" or not relation or ctx.is_new(relation):
        return
    if ctx.views.contains_rv(relation):  # a view with the old name, in this file, keeps old code working
        return
    ctx.report(
        stmt,
        "MIG019",
        f'RENAME TABLE "{rel_name(relation)}" to "{node.get("newname", "?")}" breaks running application '
        "code that uses the old name",
        ACCESS_EXCLUSIVE,
    )
