"""Constraint rules: MIG004 CHECK without NOT VALID, MIG009 FOREIGN KEY without NOT VALID,
MIG010 VALIDATE in the ADD's transaction, MIG011 SET NOT NULL without a validated CHECK,
MIG012 UNIQUE / PRIMARY KEY / EXCLUDE not USING INDEX, MIG029 ALTER DOMAIN ADD CONSTRAINT."""

from __future__ import annotations

from typing import Any

from pgtool.lint.context import FileContext, Statement, rel_name
from pgtool.lint.locks import ACCESS_EXCLUSIVE, SHARE, SHARE_ROW_EXCLUSIVE
from pgtool.lint.rules import on_alter, on_statement


def _con_name(con: dict[str, Any]) -> str:
    return f'"{con["conname"]}" ' if con.get("conname") else ""


@on_alter("AT_AddConstraint")
def add_constraint(ctx: FileContext, stmt: Statement, relation: dict[str, Any], cmd: dict[str, Any]) -> None:
    con = (cmd.get("def") or {}).get("Constraint", {})
    if ctx.is_new(relation):
        return
    contype = con.get("contype")
    table = rel_name(relation)
    name = _con_name(con)
    not_valid = bool(con.get("skip_validation"))
    if contype == "CONSTR_CHECK" and not not_valid:
        ctx.report(
            stmt,
            "MIG004",
            f'ADD CONSTRAINT {name}CHECK on "{table}" scans the whole table while holding ACCESS EXCLUSIVE',
            ACCESS_EXCLUSIVE,
        )
    elif contype == "CONSTR_FOREIGN" and not not_valid:
        ctx.report(
            stmt,
            "MIG009",
            f'ADD CONSTRAINT {name}FOREIGN KEY on "{table}" validates every row at once, locking "{table}" '
            f'and "{rel_name(con.get("pktable", {}))}"',
            SHARE_ROW_EXCLUSIVE,
        )
    elif contype in ("CONSTR_PRIMARY", "CONSTR_UNIQUE", "CONSTR_EXCLUSION") and not con.get("indexname"):
        what = {"CONSTR_PRIMARY": "PRIMARY KEY", "CONSTR_UNIQUE": "UNIQUE", "CONSTR_EXCLUSION": "EXCLUDE"}[
            contype
        ]
        ctx.report(
            stmt,
            "MIG012",
            f'ADD CONSTRAINT {name}{what} on "{table}" builds its index while holding ACCESS EXCLUSIVE',
            ACCESS_EXCLUSIVE,
        )
    elif contype == "CONSTR_NOTNULL":
        _set_not_null(ctx, stmt, relation, _names(con.get("keys", [])))


@on_alter("AT_ValidateConstraint")
def validate(ctx: FileContext, stmt: Statement, relation: dict[str, Any], cmd: dict[str, Any]) -> None:
    key = (relation.get("relname", ""), cmd.get("name", ""))
    if key in ctx.tx_constraints and not ctx.is_new(relation):
        ctx.report(
            stmt,
            "MIG010",
            f'VALIDATE CONSTRAINT "{key[1]}" runs in the same transaction as its ADD CONSTRAINT, so the '
            f'validation scan happens while the ADD\'s lock on "{rel_name(relation)}" is still held',
            ACCESS_EXCLUSIVE,
        )


@on_alter("AT_SetNotNull")
def set_not_null(ctx: FileContext, stmt: Statement, relation: dict[str, Any], cmd: dict[str, Any]) -> None:
    _set_not_null(ctx, stmt, relation, [cmd.get("name", "")])


def _set_not_null(ctx: FileContext, stmt: Statement, relation: dict[str, Any], columns: list[str]) -> None:
    if ctx.is_new(relation):
        return
    table = relation.get("relname", "")
    for column in columns:
        proven = (table, column) in ctx.run.not_null_checks
        if proven and ctx.pg_version >= 12:
            continue
        if proven:
            # Only PostgreSQL 12+ lets a validated CHECK (col IS NOT NULL) stand in for the scan.
            ctx.report(
                stmt,
                "MIG011",
                f'SET NOT NULL on "{rel_name(relation)}"."{column}" scans the whole table under '
                f"ACCESS EXCLUSIVE: PostgreSQL {ctx.pg_version} does not use the validated CHECK "
                f"({column} IS NOT NULL) to skip the scan (12 and later do)",
                ACCESS_EXCLUSIVE,
                fix="before PostgreSQL 12, keep the validated CHECK instead of NOT NULL, or SET NOT NULL "
                "off-peak with a short lock_timeout",
            )
            continue
        ctx.report(
            stmt,
            "MIG011",
            f'SET NOT NULL on "{rel_name(relation)}"."{column}" scans the whole table under '
            "ACCESS EXCLUSIVE: "
            f"no validated CHECK ({column} IS NOT NULL) was added before it",
            ACCESS_EXCLUSIVE,
        )


def _names(items: list[Any]) -> list[str]:
    return [i.get("String", {}).get("sval", "") for i in items]


@on_statement("AlterDomainStmt")
def alter_domain(ctx: FileContext, stmt: Statement) -> None:
    node = stmt.node
    names = [n.get("String", {}).get("sval", "") for n in node.get("typeName", [])]
    domain = ".".join(names)
    if ctx.domains.contains(names[-2] if len(names) > 1 else None, names[-1] if names else ""):
        return
    subtype = node.get("subtype")
    con = (node.get("def") or {}).get("Constraint", {})
    if subtype == "C" and con.get("contype") == "CONSTR_CHECK" and not con.get("skip_validation"):
        what = f"ADD CONSTRAINT {_con_name(con)}CHECK"
    elif subtype == "O":
        what = "SET NOT NULL"
    else:
        return
    ctx.report(
        stmt,
        "MIG029",
        f'ALTER DOMAIN "{domain}" {what} scans every table with a column of this domain, blocking '
        "writes to each while it checks",
        f"{SHARE} on every table using the domain",
    )
