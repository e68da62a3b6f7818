"""MIG028, and the SQL inside DO blocks: a DO block's static SQL and its EXECUTEs of constant strings are
parsed and handed back to the engine to be checked like top-level statements (findings say "in DO
block"); anything else it runs cannot be read, and is MIG028."""

from __future__ import annotations

from pgtool.lint import dynamic, parse
from pgtool.lint.context import FileContext, Statement
from pgtool.lint.rules import WARNING, cases, rule


@cases(
    fires=[
        "DO $$ BEGIN EXECUTE format('ALTER TABLE %I DROP COLUMN x', 't'); END $$;",
        "DO $$ DECLARE q text := 'x'; BEGIN EXECUTE q; END $$;",
        "DO LANGUAGE plpython3u $$ plpy.execute('select 1') $$;",
    ],
    passes=["DO $$ BEGIN EXECUTE 'SELECT 1'; END $$;", "DO $$ BEGIN PERFORM 1; END $$;"],
)
@rule("MIG028", "dynamic-sql-in-do", severity=WARNING, lock="unknown: whatever the SQL takes", on=["DoStmt"])
def do_block(ctx: FileContext, stmt: Statement) -> None:
    """dynamic SQL in a DO block cannot be checked

    Fix: write the DDL as plain statements, or EXECUTE a constant string the linter can read
    """
    from pgtool.lint.engine import check

    body, language = dynamic.do_body(stmt.node)
    if body is None:
        return
    if language != "plpgsql":
        ctx.report(stmt, "MIG028", f"DO block in language {language} runs code the linter cannot read", None)
        return
    try:
        parts = dynamic.sql_in_do(body)
    except Exception as exc:
        ctx.report(
            stmt, "MIG028", f"DO block body could not be parsed as PL/pgSQL ({exc}); not checked", None
        )
        return
    for sql in parts:
        if sql is dynamic.DYNAMIC:
            ctx.report(
                stmt, "MIG028", "EXECUTE of a non-constant string runs SQL the linter cannot see", None
            )
            continue
        try:
            tree = parse.decode_tree(sql)
        except Exception as exc:
            ctx.report(stmt, "MIG028", f"SQL in DO block could not be parsed ({exc}); not checked", None)
            continue
        for raw in tree.get("stmts", []):
            if raw.get("stmt"):
                kind, node = next(iter(raw["stmt"].items()))
                inner = Statement(kind, node, stmt.start, stmt.end, stmt.index, in_do=True)
                check(ctx, inner)
