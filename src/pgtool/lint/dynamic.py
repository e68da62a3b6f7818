"""DO blocks: the SQL they run, found through pglast's PL/pgSQL parser.

A DO block's static SQL statements and the `EXECUTE '<constant string>'` it runs are parsed and linted
like top-level statements. EXECUTE of anything else (format(), concatenation with variables) cannot be
read without running it, and is reported as MIG028.
"""

from __future__ import annotations

import json
from typing import Any

from pgtool.lint.rules import const_string

DYNAMIC = object()  # marker: an EXECUTE whose SQL cannot be known statically


def do_body(node: dict[str, Any]) -> tuple[str | None, str]:
    """(body, language) of a DoStmt."""
    body = None
    language = "plpgsql"
    for item in node.get("args", []):
        elem = item.get("DefElem", {})
        value = elem.get("arg", {}).get("String", {}).get("sval")
        if elem.get("defname") == "as":
            body = value
        elif elem.get("defname") == "language" and value:
            language = value.lower()
    return body, language


def sql_in_do(body: str) -> list[Any]:
    """SQL strings a PL/pgSQL DO body runs, in order; DYNAMIC for an EXECUTE of a non-constant.

    Raises pglast's ParseError when the body is not valid PL/pgSQL.
    """
    from pglast.parser import parse_plpgsql_json, parse_sql_json

    tag = "$pgtool_do$"
    while tag in body:
        tag = tag[:-1] + "x$"
    tree = json.loads(
        parse_plpgsql_json(f"CREATE FUNCTION pgtool_do() RETURNS void LANGUAGE plpgsql AS {tag}{body}{tag}")
    )
    stack: list[Any] = [tree]
    found: list[Any] = []  # depth-first, children pushed reversed: source order
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(reversed(node))
            continue
        if not isinstance(node, dict):
            continue
        if "PLpgSQL_stmt_execsql" in node:
            query = node["PLpgSQL_stmt_execsql"].get("sqlstmt", {}).get("PLpgSQL_expr", {}).get("query")
            if query:
                found.append(query)
            continue
        if "PLpgSQL_stmt_dynexecute" in node:
            expr = node["PLpgSQL_stmt_dynexecute"].get("query", {}).get("PLpgSQL_expr", {}).get("query", "")
            found.append(_constant(expr, parse_sql_json))
            continue
        stack.extend(reversed(list(node.values())))
    return found


def _constant(expr: str, parse_sql_json: Any) -> Any:
    """The string an EXECUTE expression evaluates to, when it is a constant; else DYNAMIC."""
    try:
        tree = json.loads(parse_sql_json(f"SELECT {expr}"))
        targets = tree["stmts"][0]["stmt"]["SelectStmt"]["targetList"]
    except Exception:
        return DYNAMIC
    if len(targets) != 1:
        return DYNAMIC
    value = const_string(targets[0].get("ResTarget", {}).get("val"))
    return DYNAMIC if value is None else value
