"""Rule registry: rule modules register checks per statement type or per ALTER TABLE subcommand.

A statement check is `check(ctx, stmt)`; an ALTER TABLE subcommand check is
`check(ctx, stmt, relation, cmd)` with `cmd` the AlterTableCmd dict, so an ALTER TABLE with several
subcommands is checked one subcommand at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

STATEMENT_CHECKS: dict[str, list[Callable[..., None]]] = {}
ALTER_CHECKS: dict[str, list[Callable[..., None]]] = {}


def on_statement(*kinds: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def register(func: Callable[..., None]) -> Callable[..., None]:
        for kind in kinds:
            STATEMENT_CHECKS.setdefault(kind, []).append(func)
        return func

    return register


def on_alter(*subtypes: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def register(func: Callable[..., None]) -> Callable[..., None]:
        for subtype in subtypes:
            ALTER_CHECKS.setdefault(subtype, []).append(func)
        return func

    return register


def load() -> None:
    """Import every rule module once (they register themselves)."""
    from pgtool.lint.rules import (  # noqa: F401
        columns,
        constraints,
        enums,
        indexes,
        partitions,
        tables,
        timeouts,
        transactions,
    )


def const_string(node: Any) -> str | None:
    """The value of a string constant node, else None."""
    if isinstance(node, dict):
        const = node.get("A_Const")
        if const and "sval" in const:
            return const["sval"].get("sval", "")
    return None


def option_value(options: list[Any], name: str) -> bool:
    """Whether the boolean option `name` is on in a parenthesized option list (VACUUM, REINDEX...).

    As PostgreSQL's defGetBoolean reads it: a bare name, 1, true or on turn it on; 0, false or off
    (any case, quoted or not) turn it off. The last mention wins.
    """
    value = False
    for item in options:
        elem = item.get("DefElem", {}) if isinstance(item, dict) else {}
        if elem.get("defname") != name:
            continue
        arg = elem.get("arg")
        if not isinstance(arg, dict):
            value = True
        elif "Integer" in arg:
            value = arg["Integer"].get("ival", 0) != 0
        elif "Boolean" in arg:
            value = bool(arg["Boolean"].get("boolval"))
        else:
            value = arg.get("String", {}).get("sval", "").lower() not in ("false", "off", "0")
    return value
