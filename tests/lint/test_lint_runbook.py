"""Every recipe in runbooks/safe-migrations.md runs on real PostgreSQL and passes the linter.

Each section (anchor `<a id="migNNN">`) holds ```sql blocks: the one after `<!-- setup -->` creates the
recipe's tables; every other block is one migration file. The test runs the set-up, then each migration
block as one query string (as a migration runner sends a file: one implicit transaction), and lints the
migration blocks in order as one run, expecting no finding.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pgtool.lint.context import RunState
from pgtool.lint.engine import lint_text
from pgtool.lint.rules.catalog import RULES
from pgtool.lint.settings import LintSettings

RUNBOOK = Path(__file__).resolve().parents[2] / "runbooks" / "safe-migrations.md"


def recipes() -> dict[str, tuple[list[str], list[str]]]:
    """rule id -> (set-up blocks, migration blocks), read from the runbook's markdown."""
    text = RUNBOOK.read_text()
    parts = re.split(r'<a id="(mig\d{3})"></a>', text)
    found: dict[str, tuple[list[str], list[str]]] = {}
    for anchor, body in zip(parts[1::2], parts[2::2], strict=True):
        setup: list[str] = []
        steps: list[str] = []
        for match in re.finditer(r"(<!-- setup -->\n)?```sql\n(.*?)```", body, re.DOTALL):
            (setup if match.group(1) else steps).append(match.group(2))
        found[anchor.upper()] = (setup, steps)
    return found


RECIPES = recipes()
WITH_SQL = sorted(rule for rule, (_, steps) in RECIPES.items() if steps)


def test_one_recipe_per_rule() -> None:
    assert sorted(RECIPES) == sorted(RULES)
    # MIG000 (fix the syntax) and MIG040 (DROP DATABASE: never from a migration) have no SQL recipe
    assert set(WITH_SQL) == set(RULES) - {"MIG000", "MIG040"}
    for rule in WITH_SQL:
        assert len(RECIPES[rule][0]) == 1, f"{rule}: one set-up block expected"


@pytest.mark.parametrize("rule", WITH_SQL)
def test_recipe_passes_the_linter(rule: str) -> None:
    _, steps = RECIPES[rule]
    run = RunState()
    for number, sql in enumerate(steps, 1):
        findings, suppressed = lint_text(f"{rule}-{number}.sql", sql, LintSettings(), run)
        assert findings == [], (rule, number, [(f.rule, f.message) for f in findings])
        assert all(f.reason for f in suppressed)


@pytest.mark.all_versions
@pytest.mark.parametrize("rule", WITH_SQL)
def test_recipe_runs_on_postgresql(database, rule: str) -> None:
    setup, steps = RECIPES[rule]
    with database.connect(autocommit=True) as conn:
        for sql in [*setup, *steps]:
            conn.execute(sql)


@pytest.mark.all_versions
def test_unsafe_concurrently_form_fails_on_postgresql(database) -> None:
    """MIG007's premise, on the real server: a file with SET + CONCURRENTLY fails as one query string."""
    import psycopg

    with database.connect(autocommit=True) as conn:
        conn.execute("CREATE TABLE t (a int)")
        with pytest.raises(
            psycopg.errors.ActiveSqlTransaction, match="cannot run inside a transaction block"
        ):
            conn.execute("SET lock_timeout = '2s'; CREATE INDEX CONCURRENTLY t_a ON t (a)")
        conn.execute("CREATE INDEX CONCURRENTLY t_a ON t (a)")
    assert [
        f.rule
        for f in lint_text(
            "x.sql", "SET lock_timeout = '2s'; CREATE INDEX CONCURRENTLY t_a ON t (a)", LintSettings()
        )[0]
    ] == ["MIG007", "MIG035"]
