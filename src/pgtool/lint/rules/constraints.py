"""Constraint rules: MIG004 CHECK without NOT VALID, MIG009 FOREIGN KEY without NOT VALID,
MIG010 VALIDATE in the ADD's transaction, MIG011 SET NOT NULL without a validated CHECK,
MIG012 UNIQUE / PRIMARY KEY / EXCLUDE not USING INDEX, MIG029 ALTER DOMAIN ADD CONSTRAINT.

MIG004, MIG009 and MIG012 read both ADD CONSTRAINT and the constraints an ADD COLUMN carries inline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pgtool.lint.context import FileContext, Statement, rel_name
from pgtool.lint.locks import ACCESS_EXCLUSIVE, DOMAIN_USERS, SHARE_ROW_EXCLUSIVE
from pgtool.lint.rules import ERROR, WARNING, cases, register_wording, rule
from pgtool.lint.rules.columns import added_column, where

_KEYS = {"CONSTR_PRIMARY": "PRIMARY KEY", "CONSTR_UNIQUE": "UNIQUE", "CONSTR_EXCLUSION": "EXCLUDE"}


def _con_name(con: dict[str, Any]) -> str:
    return f'"{con["conname"]}" ' if con.get("conname") else ""


def _added(
    ctx: FileContext, relation: dict[str, Any], cmd: dict[str, Any], contypes: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
    """(constraint, column or None) when this subcommand adds a constraint of `contypes` to an existing
    table: ADD CONSTRAINT (column None), or inline in ADD COLUMN."""
    if ctx.is_new(relation):
        return None
    if cmd.get("subtype") == "AT_AddConstraint":
        con = (cmd.get("def") or {}).get("Constraint", {})
        return (con, None) if con.get("contype") in contypes else None
    coldef = added_column(ctx, relation, cmd)
    for item in (coldef or {}).get("constraints", []):
        con = item.get("Constraint", {})
        if con.get("contype") in contypes:
            return con, coldef
    return None


Word = Callable[[dict[str, Any], dict[str, Any], dict[str, Any] | None], str]


def added_constraint_rule(
    rule_id: str,
    slug: str,
    *,
    contypes: tuple[str, ...],
    safe_with: str,
    taken: str,
    severity: str = WARNING,
    lock: str,
) -> Callable[[Word], Word]:
    """Register a rule on a constraint of `contypes` added to an existing table, by ADD CONSTRAINT or
    inline in ADD COLUMN. An ADD CONSTRAINT carrying `safe_with` (NOT VALID, USING INDEX) is the
    recipe itself and passes; an inline one has no such form. The decorated function gets
    `(relation, constraint, column or None)` and words the finding, which takes lock `taken`; its
    docstring is the rule's card."""

    def register(word: Word) -> Word:
        def check(ctx: FileContext, stmt: Statement, relation: dict[str, Any], cmd: dict[str, Any]) -> None:
            found = _added(ctx, relation, cmd, contypes)
            if found is None:
                return
            con, coldef = found
            if coldef is None and con.get(safe_with):
                return
            ctx.report(stmt, rule_id, word(relation, con, coldef), taken)

        alter = ["AT_AddConstraint", "AT_AddColumn"]
        register_wording(word, check, rule_id, slug, severity=severity, lock=lock, alter=alter)
        return word

    return register


@cases(
    fires=[
        "ALTER TABLE orders ADD CONSTRAINT c CHECK (total >= 0);",
        "ALTER TABLE orders ADD CHECK (total >= 0);",
        "ALTER TABLE orders ADD COLUMN q int CHECK (q > 0);",
    ],
    passes=[
        "ALTER TABLE orders ADD CONSTRAINT c CHECK (total >= 0) NOT VALID;",
        "ALTER TABLE orders VALIDATE CONSTRAINT c;",
        "CREATE TABLE fresh (a int); ALTER TABLE fresh ADD CONSTRAINT c CHECK (a > 0);",
    ],
)
@added_constraint_rule(
    "MIG004",
    "check-not-valid",
    severity=ERROR,
    lock=ACCESS_EXCLUSIVE,
    contypes=("CONSTR_CHECK",),
    safe_with="skip_validation",
    taken=ACCESS_EXCLUSIVE,
)
def check_constraint(relation: dict[str, Any], con: dict[str, Any], coldef: dict[str, Any] | None) -> str:
    """CHECK constraint added without NOT VALID

    Fix: ADD CONSTRAINT ... CHECK (...) NOT VALID, then VALIDATE CONSTRAINT in a later migration
    """
    if coldef is not None:
        return f"ADD COLUMN with a CHECK constraint scans the table to validate {where(relation, coldef)}"
    return (
        f'ADD CONSTRAINT {_con_name(con)}CHECK on "{rel_name(relation)}" scans the whole table while '
        "holding ACCESS EXCLUSIVE"
    )


@cases(
    fires=[
        "ALTER TABLE items ADD CONSTRAINT fk FOREIGN KEY (order_id) REFERENCES orders (id);",
        "ALTER TABLE items ADD COLUMN order_id bigint REFERENCES orders (id);",
    ],
    passes=[
        "ALTER TABLE items ADD CONSTRAINT fk FOREIGN KEY (o) REFERENCES orders (id) NOT VALID;",
        "CREATE TABLE items (o bigint REFERENCES orders (id));",
    ],
)
@added_constraint_rule(
    "MIG009",
    "foreign-key-not-valid",
    severity=WARNING,
    lock=f"{SHARE_ROW_EXCLUSIVE} on both tables",
    contypes=("CONSTR_FOREIGN",),
    safe_with="skip_validation",
    taken=SHARE_ROW_EXCLUSIVE,
)
def foreign_key(relation: dict[str, Any], con: dict[str, Any], coldef: dict[str, Any] | None) -> str:
    """FOREIGN KEY added without NOT VALID

    Fix: ADD CONSTRAINT ... FOREIGN KEY ... NOT VALID, then VALIDATE CONSTRAINT in a later migration
    """
    table = rel_name(relation)
    target = rel_name(con.get("pktable", {}))
    if coldef is not None:
        return (
            f"ADD COLUMN ... REFERENCES {target} validates {where(relation, coldef)} at once and locks "
            "both tables"
        )
    return (
        f'ADD CONSTRAINT {_con_name(con)}FOREIGN KEY on "{table}" validates every row at once, locking '
        f'"{table}" and "{target}"'
    )


@cases(
    fires=[
        "ALTER TABLE orders ADD CONSTRAINT u UNIQUE (a);",
        "ALTER TABLE orders ADD PRIMARY KEY (id);",
        "ALTER TABLE orders ADD COLUMN code text UNIQUE;",
        "ALTER TABLE r ADD CONSTRAINT ex EXCLUDE USING gist (during WITH &&);",
    ],
    passes=[
        "ALTER TABLE orders ADD CONSTRAINT u UNIQUE USING INDEX orders_u;",
        "ALTER TABLE orders ADD CONSTRAINT pk PRIMARY KEY USING INDEX orders_pk;",
    ],
)
@added_constraint_rule(
    "MIG012",
    "unique-not-using-index",
    severity=ERROR,
    lock=ACCESS_EXCLUSIVE,
    contypes=tuple(_KEYS),
    safe_with="indexname",
    taken=ACCESS_EXCLUSIVE,
)
def unique_key(relation: dict[str, Any], con: dict[str, Any], coldef: dict[str, Any] | None) -> str:
    """UNIQUE / PRIMARY KEY / EXCLUDE constraint builds its index under ACCESS EXCLUSIVE

    Fix: CREATE UNIQUE INDEX CONCURRENTLY first, then ADD CONSTRAINT ... USING INDEX
    """
    what = _KEYS[con["contype"]]
    if coldef is not None:
        return f"ADD COLUMN ... {what} builds a unique index for {where(relation, coldef)}"
    return (
        f'ADD CONSTRAINT {_con_name(con)}{what} on "{rel_name(relation)}" builds its index while holding '
        "ACCESS EXCLUSIVE"
    )


@cases(
    fires=[
        "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID;\nALTER TABLE t VALIDATE CONSTRAINT c;",
        "ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES o (id) NOT VALID, VALIDATE CONSTRAINT f;",
    ],
    passes=[
        "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID;\nCOMMIT;\n"
        "ALTER TABLE t VALIDATE CONSTRAINT c;",
        "ALTER TABLE t VALIDATE CONSTRAINT c;",
    ],
)
@rule(
    "MIG010",
    "validate-in-add-transaction",
    severity=ERROR,
    lock=f"the ADD's lock ({ACCESS_EXCLUSIVE} for a CHECK), held through the validation scan",
    alter=["AT_ValidateConstraint"],
)
def validate(ctx: FileContext, stmt: Statement, relation: dict[str, Any], cmd: dict[str, Any]) -> None:
    """VALIDATE CONSTRAINT in the same transaction as its ADD

    Fix: move VALIDATE CONSTRAINT to a later migration file (its own transaction)
    """
    key = (relation.get("relname", ""), cmd.get("name", ""))
    if key in ctx.tx_constraints and not ctx.is_new(relation):
        ctx.report(
            stmt,
            "MIG010",
            f'VALIDATE CONSTRAINT "{key[1]}" runs in the same transaction as its ADD CONSTRAINT, so the '
            f'validation scan happens while the ADD\'s lock on "{rel_name(relation)}" is still held',
            ACCESS_EXCLUSIVE,
        )


@cases(
    fires=[
        "ALTER TABLE orders ALTER COLUMN a SET NOT NULL;",
        "ALTER TABLE t ADD CONSTRAINT c CHECK (a IS NOT NULL) NOT VALID; ALTER TABLE t ALTER a SET NOT NULL;",
    ],
    passes=[
        "ALTER TABLE t ADD CONSTRAINT c CHECK (a IS NOT NULL); ALTER TABLE t ALTER a SET NOT NULL;",
        "ALTER TABLE t ALTER COLUMN a DROP NOT NULL;",
    ],
)
@rule(
    "MIG011",
    "set-not-null-without-check",
    severity=ERROR,
    lock=ACCESS_EXCLUSIVE,
    alter=["AT_SetNotNull", "AT_AddConstraint"],
)
def set_not_null(ctx: FileContext, stmt: Statement, relation: dict[str, Any], cmd: dict[str, Any]) -> None:
    """SET NOT NULL without a validated CHECK (col IS NOT NULL)

    Fix: add CHECK (col IS NOT NULL) NOT VALID, VALIDATE it, then SET NOT NULL and drop the CHECK
    """
    if ctx.is_new(relation):
        return
    if cmd.get("subtype") == "AT_SetNotNull":
        columns = [cmd.get("name", "")]
    else:  # ADD CONSTRAINT ... NOT NULL (PostgreSQL 18)
        con = (cmd.get("def") or {}).get("Constraint", {})
        if con.get("contype") != "CONSTR_NOTNULL":
            return
        columns = [i.get("String", {}).get("sval", "") for i in con.get("keys", [])]
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


@cases(
    fires=[
        "ALTER DOMAIN positive ADD CONSTRAINT p CHECK (VALUE > 0);",
        "ALTER DOMAIN s.email SET NOT NULL;",
    ],
    passes=[
        "ALTER DOMAIN positive ADD CONSTRAINT p CHECK (VALUE > 0) NOT VALID;",
        "CREATE DOMAIN positive AS int; ALTER DOMAIN positive ADD CONSTRAINT p CHECK (VALUE > 0);",
        "ALTER DOMAIN positive DROP NOT NULL;",
    ],
)
@rule(
    "MIG029",
    "alter-domain-add-constraint",
    severity=WARNING,
    lock=DOMAIN_USERS,
    on=["AlterDomainStmt"],
)
def alter_domain(ctx: FileContext, stmt: Statement) -> None:
    """ALTER DOMAIN ADD CONSTRAINT / SET NOT NULL checks every column of the domain at once

    Fix: use table-level CHECK constraints (NOT VALID, then VALIDATE), or add it NOT VALID off-peak
    """
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
        DOMAIN_USERS,
    )
