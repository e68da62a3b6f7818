"""Rules about how a migration behaves when it is re-run, read or run against data: MIG035 statements that
cannot be re-run after a partial failure, MIG036 identifiers PostgreSQL truncates, MIG037 DROP NOT NULL,
MIG040 DROP DATABASE, MIG043 UPDATE / DELETE with no bound on the rows it touches."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pgtool.lint.context import FileContext, Statement, rel_name
from pgtool.lint.locks import ACCESS_EXCLUSIVE, DATABASE_EXCLUSIVE, ROW_EXCLUSIVE
from pgtool.lint.parsetree import walk
from pgtool.lint.rules import ERROR, cases, existing_table_rule, rule
from pgtool.lint.rules.indexes import concurrently

MAX_IDENTIFIER_BYTES = 63  # NAMEDATALEN - 1


def _not_atomic(ctx: FileContext, stmt: Statement) -> str | None:
    """Why a failure part-way through this file leaves earlier work committed, if it does."""
    node = stmt.node
    if (stmt.kind in ("IndexStmt", "DropStmt") and node.get("concurrent")) or (
        stmt.kind == "ReindexStmt" and concurrently(node.get("params", []))
    ):
        return (
            "a CONCURRENTLY statement commits as it goes, and a failure leaves its half-built object behind"
        )
    if ctx.several_transactions:
        return "the file commits part-way, so a failure after a COMMIT leaves what came before in place"
    return None


def _not_rerunnable(stmt: Statement) -> str | None:
    node = stmt.node
    kind = stmt.kind
    if kind == "IndexStmt" and not node.get("if_not_exists") and node.get("idxname"):
        return "CREATE INDEX without IF NOT EXISTS"
    if kind in ("CreateStmt", "CreateSeqStmt") and not node.get("if_not_exists"):
        return f"CREATE {'TABLE' if kind == 'CreateStmt' else 'SEQUENCE'} without IF NOT EXISTS"
    if kind == "CreateSchemaStmt" and not node.get("if_not_exists"):
        return "CREATE SCHEMA without IF NOT EXISTS"
    if kind == "DropStmt" and not node.get("missing_ok"):
        return "DROP without IF EXISTS"
    if kind == "AlterTableStmt":
        for item in node.get("cmds", []):
            cmd = item.get("AlterTableCmd", {})
            if cmd.get("subtype") == "AT_AddColumn" and not cmd.get("missing_ok"):
                return "ADD COLUMN without IF NOT EXISTS"
            if cmd.get("subtype") in ("AT_DropColumn", "AT_DropConstraint") and not cmd.get("missing_ok"):
                return "DROP COLUMN / CONSTRAINT without IF EXISTS"
    return None


@cases(
    fires=[
        "CREATE INDEX CONCURRENTLY orders_total ON orders (total);",
        "DROP INDEX CONCURRENTLY orders_total;",
        "CREATE TABLE a (id bigint); COMMIT; CREATE TABLE b (id bigint);",
        "SET lock_timeout = '2s'; ALTER TABLE t ADD COLUMN a int; COMMIT; SELECT 1;",
    ],
    passes=[
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_total ON orders (total);",
        "DROP INDEX CONCURRENTLY IF EXISTS orders_total;",
        "CREATE TABLE a (id bigint); CREATE INDEX a_id ON a (id);",
        "BEGIN; CREATE TABLE a (id bigint); COMMIT;",
        "CREATE TABLE IF NOT EXISTS a (id bigint); COMMIT; CREATE TABLE IF NOT EXISTS b (id bigint);",
    ],
)
@rule(
    "MIG035",
    "not-rerunnable",
    lock="none (the re-run fails with 'already exists' / 'does not exist')",
    on=["IndexStmt", "CreateStmt", "CreateSeqStmt", "CreateSchemaStmt", "DropStmt", "AlterTableStmt"],
)
def not_rerunnable(ctx: FileContext, stmt: Statement) -> None:
    """statement that cannot be re-run after a partial failure

    Fix: use IF NOT EXISTS / IF EXISTS; after a failed CREATE INDEX CONCURRENTLY, drop its INVALID index
    """
    what = _not_rerunnable(stmt)
    why = _not_atomic(ctx, stmt) if what else None
    if what and why:
        ctx.report(
            stmt,
            "MIG035",
            f"{what} cannot be re-run after a partial failure: {why}; the retry then stops on this statement",
            "none",
        )


_LONG_WORD = re.compile(r'[^\s(),;.:\'"=<>+*/-]{22,}|"[^"]{22,}"')


@cases(
    fires=[
        f"CREATE TABLE t (a int); CREATE INDEX {'x' * 64} ON t (a);",
        f'ALTER TABLE orders ADD CONSTRAINT "{"é" * 32}" CHECK (a > 0) NOT VALID;',
    ],
    passes=[
        f"CREATE TABLE {'x' * 63} (a int);",
        f"INSERT INTO t VALUES ('{'x' * 100}');",
        f"-- {'x' * 100}\nSELECT 1;",
    ],
)
@rule("MIG036", "identifier-too-long", lock="none", on=["*"])
def identifier_too_long(ctx: FileContext, stmt: Statement) -> None:
    """identifier longer than 63 bytes, which PostgreSQL silently truncates

    Fix: shorten the name to 63 bytes or fewer (PostgreSQL keeps only the first 63)
    """
    if stmt.in_do:
        return
    if ctx.long_words is None:  # one search of the whole file spares one per statement
        ctx.long_words = _LONG_WORD.search(ctx.source.text) is not None
    if not ctx.long_words:
        return
    text = ctx.source.text[stmt.start : stmt.end]
    if not _LONG_WORD.search(text):  # nothing long enough: skip the scanner
        return
    from pglast.parser import scan

    try:
        tokens = scan(text)
    except Exception:
        return
    for token in tokens:
        if token.name != "IDENT":
            continue
        name = text[token.start : token.end + 1]  # the scanner's positions are characters, end inclusive
        if name.startswith('"'):
            name = name[1:-1].replace('""', '"')
        size = len(name.encode("utf-8"))
        if size > MAX_IDENTIFIER_BYTES:
            ctx.report(
                stmt,
                "MIG036",
                f'identifier "{name[:20]}..." is {size} bytes: PostgreSQL keeps only the first 63, so '
                "the object gets another name than the one written (and two such names can collide)",
                "none",
            )
            return


@cases(
    fires=["ALTER TABLE orders ALTER COLUMN customer_id DROP NOT NULL;"],
    passes=[
        "CREATE TABLE t (a int NOT NULL); ALTER TABLE t ALTER COLUMN a DROP NOT NULL;",
        "ALTER TABLE orders ALTER COLUMN a SET NOT NULL;",
    ],
)
@existing_table_rule("MIG037", "drop-not-null", lock=ACCESS_EXCLUSIVE, alter=["AT_DropNotNull"])
def drop_not_null(relation: dict[str, Any], cmd: dict[str, Any]) -> str:
    """DROP NOT NULL

    Fix: make every reader handle NULL first, then drop the constraint in a later release
    """
    return (
        f'DROP NOT NULL on "{rel_name(relation)}"."{cmd.get("name", "?")}": running code that assumes a '
        "value is always there starts reading NULLs as soon as one is written"
    )


@cases(
    fires=["DROP DATABASE app_old;", "DROP DATABASE IF EXISTS app_old WITH (FORCE);"],
    passes=["DROP TABLE IF EXISTS t;", "CREATE DATABASE app_new;"],
)
@rule("MIG040", "drop-database", severity=ERROR, lock=DATABASE_EXCLUSIVE, on=["DropdbStmt"])
def drop_database(ctx: FileContext, stmt: Statement) -> None:
    """DROP DATABASE

    Fix: never drop a database from a migration: archive it, then drop it by hand once nothing uses it
    """
    ctx.report(
        stmt,
        "MIG040",
        f'DROP DATABASE "{stmt.node.get("dbname", "?")}" destroys every table in it for good',
        DATABASE_EXCLUSIVE,
    )


def _bounded(where: Any) -> bool:
    """Whether a WHERE clause bounds the rows: a LIMIT-ed subquery, BETWEEN, both a lower and an upper
    bound, or equality / IN with constants (a keyed change)."""
    if not isinstance(where, dict):
        return False
    lower = upper = False
    for node in walk(where, _outside_or):
        select = node.get("SelectStmt")
        if select is not None and select.get("limitCount"):
            return True
        expr = node.get("A_Expr")
        if expr is not None:
            kind = expr.get("kind")
            op = (expr.get("name") or [{}])[0].get("String", {}).get("sval", "")
            if kind in ("AEXPR_BETWEEN", "AEXPR_BETWEEN_SYM", "AEXPR_IN"):
                return True
            if (
                kind == "AEXPR_OP"
                and op == "="
                and ("A_Const" in expr.get("rexpr", {}) or "ParamRef" in expr.get("rexpr", {}))
            ):
                return True
            if kind == "AEXPR_OP":
                lower |= op in (">", ">=")
                upper |= op in ("<", "<=")
    return lower and upper


def _outside_or(node: dict[str, Any]) -> Iterable[Any]:
    """One side of an OR bounds nothing: the walk does not go into it."""
    return () if node.get("BoolExpr", {}).get("boolop") == "OR_EXPR" else node.values()


@cases(
    fires=[
        "UPDATE orders SET status = 'new';",
        "UPDATE orders SET status = 'new' WHERE status IS NULL;",
        "DELETE FROM events WHERE created_at < now() - interval '1 year';",
        "UPDATE orders SET a = 1 WHERE id = 5 OR status IS NULL;",
    ],
    passes=[
        "UPDATE orders SET status = 'new'\n"
        "WHERE id IN (SELECT id FROM orders WHERE status IS NULL LIMIT 5000);",
        "UPDATE orders SET status = 'new' WHERE id BETWEEN 1 AND 10000;",
        "DELETE FROM orders WHERE id >= 1 AND id < 10000;",
        "UPDATE settings SET value = 'x' WHERE key = 'mode';",
        "CREATE TABLE t (a int); UPDATE t SET a = 1;",
    ],
)
@rule(
    "MIG043",
    "unbatched-backfill",
    lock=f"{ROW_EXCLUSIVE}, plus a row lock on every row touched until the migration commits",
    on=["UpdateStmt", "DeleteStmt"],
)
def unbatched(ctx: FileContext, stmt: Statement) -> None:
    """UPDATE or DELETE with no bound on the rows it touches

    Fix: backfill in batches: UPDATE ... WHERE id IN (SELECT id ... LIMIT 10000), one transaction per batch
    """
    node = stmt.node
    relation = node.get("relation", {})
    if ctx.is_new(relation) or _bounded(node.get("whereClause")):
        return
    verb = "UPDATE" if stmt.kind == "UpdateStmt" else "DELETE"
    scope = "every row" if not node.get("whereClause") else "every row that matches, however many"
    ctx.report(
        stmt,
        "MIG043",
        f'{verb} on "{rel_name(relation)}" touches {scope} in one transaction: row locks block concurrent '
        "writers until the migration commits, and the dead rows and WAL arrive all at once",
        f"{ROW_EXCLUSIVE}; row locks on every row touched",
    )
