"""Function volatility for MIG002, from the catalogue generated out of real PostgreSQL's pg_proc.

`data/volatility_pg<major>.json` is written by `scripts/gen_volatility.py` for each supported major.
For another --pg-version the nearest older catalogue is used (15's for majors before 15): built-in
volatility changes rarely between majors.

Decision for functions the catalogue does not know (user or extension functions): they are treated
as VOLATILE, because that is CREATE FUNCTION's default and the cost of being wrong is a full table
rewrite under ACCESS EXCLUSIVE. The finding says so; a function created earlier in the linted files
with an explicit STABLE or IMMUTABLE is known and does not fire.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from pgtool.lint.parsetree import walk

DATA_DIR = Path(__file__).parent / "data"
CATALOGUE_MAJORS = (15, 18)
SUPPORTED_MAJORS = tuple(range(10, 19))
NEWEST = max(CATALOGUE_MAJORS)

VOLATILE = "volatile"
STABLE = "stable"
IMMUTABLE = "immutable"


def catalogue_major(pg_version: int) -> int:
    """The catalogue used for `pg_version`."""
    older = [m for m in CATALOGUE_MAJORS if m <= pg_version]
    return max(older) if older else min(CATALOGUE_MAJORS)


@cache
def catalogue(pg_version: int) -> dict[str, str]:
    """Built-in function name -> volatility for `pg_version`."""
    data = json.loads((DATA_DIR / f"volatility_pg{catalogue_major(pg_version)}.json").read_text())
    names: dict[str, str] = {}
    for kind in (IMMUTABLE, STABLE, VOLATILE):
        for name in data[kind]:
            names[name] = kind
    return names


def _func_name(call: dict[str, Any]) -> tuple[str | None, str]:
    parts = [p.get("String", {}).get("sval", "") for p in call.get("funcname", [])]
    if len(parts) >= 2:
        return parts[-2], parts[-1]
    return None, parts[-1] if parts else ""


def volatile_calls(expr: object, pg_version: int, user_functions: dict[str, str]) -> list[tuple[str, bool]]:
    """Function calls in `expr` (a JSON parse tree) that make it volatile.

    Returns (function name, known) pairs: known=False means the function is not a built-in of that
    PostgreSQL version and not created in the linted files, so it is assumed VOLATILE.
    """
    found: list[tuple[str, bool]] = []
    builtins: dict[str, str] | None = None
    for node in walk(expr, _into_arguments):
        call = node.get("FuncCall")
        if call is None:
            continue
        schema, name = _func_name(call)
        if builtins is None:
            builtins = catalogue(pg_version)
        kind = None
        if schema in (None, "pg_catalog"):
            kind = builtins.get(name)
        if kind is None and schema != "pg_catalog":
            kind = user_functions.get(name)
            if kind is None:
                found.append((name if schema is None else f"{schema}.{name}", False))
                continue
        if kind == VOLATILE:
            found.append((name, True))
    return found


def _into_arguments(node: dict[str, Any]) -> Iterable[Any]:
    """A call is read for its arguments only (not its name, FILTER or OVER clause)."""
    call = node.get("FuncCall")
    return node.values() if call is None else call.get("args", [])
