"""Rule registry: one decorated function per rule, carrying everything about that rule.

    @cases(fires=["DROP INDEX i;"], passes=["DROP INDEX CONCURRENTLY i;"])
    @rule("MIG015", "drop-index-not-concurrently", severity=ERROR, lock=ACCESS_EXCLUSIVE, on=["DropStmt"])
    def drop_index(ctx, stmt):
        '''DROP INDEX without CONCURRENTLY

        Fix: use DROP INDEX CONCURRENTLY, alone in its own migration file
        '''

The function's docstring is the rule's card: its first paragraph is the title, its `Fix:` paragraph
the recipe in one line (wrapped lines are joined with spaces). `on` lists the statement types the
function is called for as `check(ctx, stmt)` ("*": every statement); `alter` lists ALTER TABLE
subcommands, called as `check(ctx, stmt, relation, cmd)` with `cmd` the AlterTableCmd dict, so an
ALTER TABLE with several subcommands is checked one at a time. `cases` gives the rule its own test
cases (tests/lint/test_lint_rules.py runs every one): SQL that must report the rule, and look-alikes
that must not. The recipe is the runbook section headed with the rule id (`Rule.anchor`). Rules
reported by the engine itself (syntax errors, ignore comments) are registered with `declare`.
`catalog.RULES` is built from these registrations.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Required, TypedDict, TypeVar, Unpack

from pgtool.lint.locks import ACCESS_EXCLUSIVE

if TYPE_CHECKING:
    from pgtool.lint.context import FileContext, Statement

ERROR = "error"
WARNING = "warning"
RUNBOOK = "runbooks/safe-migrations.md"

Check = Callable[..., Any]
F = TypeVar("F", bound=Check)
STATEMENT_CHECKS: dict[str, list[Check]] = {}
ALTER_CHECKS: dict[str, list[Check]] = {}


@dataclass(frozen=True)
class Rule:
    id: str
    slug: str
    severity: str
    title: str
    lock: str  # the lock the hazard takes, as the recipe documents it
    fix: str  # the recipe in one line
    fires: tuple[str, ...] = ()
    passes: tuple[str, ...] = ()

    @property
    def anchor(self) -> str:
        """The recipe: the runbook section for this rule."""
        return f"{RUNBOOK}#{self.id.lower()}"


REGISTRY: dict[str, Rule] = {}


class Description(TypedDict, total=False):
    """What `declare` records about a rule besides its id and slug (the fields of `Rule`)."""

    title: Required[str]
    lock: Required[str]
    fix: Required[str]
    severity: str
    fires: Iterable[str]
    passes: Iterable[str]


def declare(rule_id: str, slug: str, **about: Unpack[Description]) -> Rule:
    """Register a rule's description and cases (the rule function, if any, is registered by `rule`)."""
    if rule_id in REGISTRY:
        raise ValueError(f"rule {rule_id} registered twice")
    found = Rule(
        rule_id,
        slug,
        about.get("severity", WARNING),
        about["title"],
        about["lock"],
        about["fix"],
        tuple(about.get("fires", ())),
        tuple(about.get("passes", ())),
    )
    REGISTRY[rule_id] = found
    return found


def card(func: Callable[..., Any]) -> tuple[str, str]:
    """(title, fix) from a rule function's docstring: the first paragraph, and the `Fix:` paragraph."""
    title, _, rest = inspect.cleandoc(func.__doc__ or "").partition("\n\n")
    fix = next((p for p in rest.split("\n\n") if p.startswith("Fix: ")), "").removeprefix("Fix: ")
    if not title or not fix:
        raise ValueError(f"rule function {func.__qualname__} needs a title line and a Fix: paragraph")
    return " ".join(title.split()), " ".join(fix.split())


# The rule each decorated function registered, for `cases`.
_REGISTERED: dict[Callable[..., Any], str] = {}


def rule(
    rule_id: str,
    slug: str,
    *,
    severity: str = WARNING,
    lock: str,
    on: Iterable[str] = (),
    alter: Iterable[str] = (),
) -> Callable[[Check], Check]:
    """Register the decorated function as rule `rule_id` (see the module docstring)."""

    def register(func: Check) -> Check:
        title, fix = card(func)
        declare(rule_id, slug, severity=severity, title=title, lock=lock, fix=fix)
        for kind in on:
            STATEMENT_CHECKS.setdefault(kind, []).append(func)
        for subtype in alter:
            ALTER_CHECKS.setdefault(subtype, []).append(func)
        _REGISTERED[func] = rule_id
        return func

    return register


def cases(*, fires: Iterable[str], passes: Iterable[str]) -> Callable[[F], F]:
    """Give the rule registered by the decorated function its test cases: SQL that must report it
    (`fires`) and look-alikes that must not (`passes`)."""

    def attach(func: F) -> F:
        rule_id = _REGISTERED[func]
        REGISTRY[rule_id] = replace(REGISTRY[rule_id], fires=tuple(fires), passes=tuple(passes))
        return func

    return attach


def register_wording(
    words: Check,
    check: Check,
    rule_id: str,
    slug: str,
    *,
    severity: str,
    lock: str,
    alter: Iterable[str],
) -> None:
    """Register `check` as rule `rule_id` for a family of rules whose members differ only in their
    words: the member is written as `words`, whose docstring is the card and which `cases` decorates."""
    check.__doc__ = words.__doc__
    rule(rule_id, slug, severity=severity, lock=lock, alter=alter)(check)
    _REGISTERED[words] = rule_id


Describe = Callable[[dict[str, Any], dict[str, Any]], str]


def existing_table_rule(
    rule_id: str, slug: str, *, severity: str = WARNING, lock: str, alter: Iterable[str]
) -> Callable[[Describe], Describe]:
    """Register an ALTER TABLE subcommand rule that fires on every table this file did not create.

    Such a rule always takes ACCESS EXCLUSIVE and differs from the others of its kind only in its
    words: the decorated function gets `(relation, cmd)` and returns the finding's message; its
    docstring is the rule's card.
    """

    def register(describe: Describe) -> Describe:
        def check(ctx: FileContext, stmt: Statement, relation: dict[str, Any], cmd: dict[str, Any]) -> None:
            if not ctx.is_new(relation):
                ctx.report(stmt, rule_id, describe(relation, cmd), ACCESS_EXCLUSIVE)

        register_wording(describe, check, rule_id, slug, severity=severity, lock=lock, alter=alter)
        return describe

    return register


_loaded = False


def load() -> None:
    """Import every rule module once (they register themselves)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from pgtool.lint.rules import (  # noqa: F401
        columns,
        constraints,
        dynamic_sql,
        enums,
        hygiene,
        indexes,
        meta,
        partitions,
        tables,
        timeouts,
        transactions,
        types,
    )


def const_string(node: Any) -> str | None:
    """The value of a string constant node, else None."""
    if isinstance(node, dict):
        const = node.get("A_Const")
        if const and "sval" in const:
            return str(const["sval"].get("sval", ""))
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
