"""Per rule: statements that must fire, and look-alikes that must not."""

from __future__ import annotations

import pytest
from lint_helpers import lint_sql, rules_of

from pgtool.lint.rules.catalog import RULES

FIRES = [(rule.id, sql) for rule in RULES.values() for sql in rule.fires]
PASSES = [(rule.id, sql) for rule in RULES.values() for sql in rule.passes]


def _off(rule: str) -> set[str]:
    """MIG027 (no lock_timeout) rides along with most cases; keep it out unless it is the subject."""
    return set() if rule == "MIG027" else {"MIG027"}


@pytest.mark.parametrize(("rule", "sql"), FIRES, ids=[f"{r}-fires-{i}" for i, (r, _) in enumerate(FIRES)])
def test_rule_fires(rule: str, sql: str) -> None:
    assert rule in rules_of(sql, disabled=_off(rule)), sql


@pytest.mark.parametrize(("rule", "sql"), PASSES, ids=[f"{r}-passes-{i}" for i, (r, _) in enumerate(PASSES)])
def test_rule_does_not_fire(rule: str, sql: str) -> None:
    assert rule not in rules_of(sql), sql


def test_every_rule_has_cases_a_slug_a_lock_and_a_recipe() -> None:
    slugs = set()
    for rule in RULES.values():
        assert rule.fires and rule.passes, rule.id
        assert rule.slug and rule.slug not in slugs, rule.id
        slugs.add(rule.slug)
        assert rule.lock and rule.fix and rule.title, rule.id
        assert rule.anchor == f"runbooks/safe-migrations.md#{rule.id.lower()}"


def test_rewrites_and_access_exclusive_fail_the_build_by_default() -> None:
    errors = {r.id for r in RULES.values() if r.severity == "error"}
    # rewrites, ACCESS EXCLUSIVE on an existing table, and statements that fail outright
    for rule in ("MIG001", "MIG002", "MIG003", "MIG007", "MIG011", "MIG012", "MIG014", "MIG015", "MIG017"):
        assert rule in errors, rule
    for rule in ("MIG018", "MIG019", "MIG020", "MIG021", "MIG022", "MIG023", "MIG026", "MIG027", "MIG030"):
        assert rule in errors, rule
    # weaker locks stay warnings
    for rule in ("MIG009", "MIG016", "MIG028", "MIG029", "MIG090", "MIG091", "MIG092"):
        assert RULES[rule].severity == "warning", rule


def test_alter_table_checked_per_subcommand() -> None:
    sql = (
        "ALTER TABLE orders ADD COLUMN a timestamptz DEFAULT now(), "
        "ADD COLUMN b uuid DEFAULT gen_random_uuid(), "
        "ALTER COLUMN c TYPE bigint, DROP COLUMN d, ADD CONSTRAINT k CHECK (x > 0) NOT VALID;"
    )
    found = rules_of(sql, disabled={"MIG027", "MIG032"})
    assert sorted(found) == ["MIG002", "MIG003", "MIG005"]


def test_several_statements_on_one_line_get_their_own_columns() -> None:
    findings, _ = lint_sql("SELECT 1; ALTER TABLE t DROP COLUMN a;   DROP INDEX i;", disabled={"MIG027"})
    assert [(f.rule, f.line, f.column) for f in findings] == [("MIG005", 1, 11), ("MIG015", 1, 42)]


def test_position_points_at_first_token_not_leading_comment() -> None:
    sql = "SELECT 1;\n-- explain\n/* more */\n   ALTER TABLE t DROP COLUMN a;"
    findings, _ = lint_sql(sql, disabled={"MIG027"})
    assert [(f.line, f.column) for f in findings] == [(4, 4)]


def test_position_counts_characters_after_multibyte_text() -> None:
    sql = "SELECT 'héllo wörld ✓'; ALTER TABLE t DROP COLUMN a;"
    findings, _ = lint_sql(sql, disabled={"MIG027"})
    assert (findings[0].line, findings[0].column) == (1, sql.index("ALTER") + 1)


def test_every_finding_names_a_lock() -> None:
    for rule, sql in FIRES:
        findings, _ = lint_sql(sql)
        for finding in findings:
            if finding.rule not in ("MIG028", "MIG000", "MIG090", "MIG091", "MIG092"):
                assert finding.lock, (rule, finding)


def test_mig002_pg_version_matters() -> None:
    sql = "ALTER TABLE orders ADD COLUMN u uuid DEFAULT uuidv7();"
    assert "MIG002" in rules_of(sql, pg_version=18)
    # uuidv7() is not a PostgreSQL 15 built-in: still reported, as an unknown (assumed volatile) function
    findings, _ = lint_sql(sql, pg_version=15)
    assert any("assumed VOLATILE" in f.message for f in findings if f.rule == "MIG002")
    # before PostgreSQL 11 any default rewrites
    assert "MIG002" in rules_of("ALTER TABLE orders ADD COLUMN a int DEFAULT 0;", pg_version=10)
    assert "MIG002" not in rules_of("ALTER TABLE orders ADD COLUMN a int DEFAULT 0;", pg_version=11)


def test_mig002_names_the_function_and_volatility() -> None:
    findings, _ = lint_sql("ALTER TABLE orders ADD COLUMN r float8 DEFAULT random();", pg_version=15)
    message = next(f.message for f in findings if f.rule == "MIG002")
    assert "random() is VOLATILE in PostgreSQL 15" in message


def test_mig007_lists_why() -> None:
    findings, _ = lint_sql("SET lock_timeout = '1s'; CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a);")
    assert [f.rule for f in findings] == ["MIG007"]
    assert "2 statements" in findings[0].message


def test_mig027_lock_timeout() -> None:
    assert "MIG027" in rules_of("ALTER TABLE t ADD COLUMN a int;")
    assert "MIG027" not in rules_of("SET lock_timeout = '2s'; ALTER TABLE t ADD COLUMN a int;")
    assert "MIG027" not in rules_of("SET lock_timeout TO 2000; ALTER TABLE t ADD COLUMN a int;")
    assert "MIG027" not in rules_of(
        "SELECT set_config('lock_timeout', '2s', false); ALTER TABLE t ADD COLUMN a int;"
    )
    assert "MIG027" in rules_of("SET lock_timeout = 0; ALTER TABLE t ADD COLUMN a int;")
    assert "MIG027" in rules_of(
        "SET lock_timeout = '1s'; RESET lock_timeout; ALTER TABLE t ADD COLUMN a int;"
    )
    assert "MIG027" in rules_of(
        "BEGIN; SET LOCAL lock_timeout = '1s'; COMMIT; ALTER TABLE t ADD COLUMN a int;"
    )
    # weaker locks and new tables do not need it
    assert "MIG027" not in rules_of("CREATE INDEX CONCURRENTLY i ON t (a);")
    assert "MIG027" not in rules_of("ALTER TABLE t VALIDATE CONSTRAINT c;")
    assert "MIG027" not in rules_of("CREATE TABLE n (a int); ALTER TABLE n ADD COLUMN b int;")
    assert "MIG027" in rules_of("CREATE TABLE p_2026 PARTITION OF p FOR VALUES FROM (1) TO (2);")
    # once per file
    assert rules_of("ALTER TABLE t ADD COLUMN a int; ALTER TABLE u ADD COLUMN b int;").count("MIG027") == 1


def test_cross_file_state_in_one_run(tmp_path) -> None:
    from pgtool.lint.engine import lint_files
    from pgtool.lint.settings import LintSettings

    (tmp_path / "1.sql").write_text(
        "SET lock_timeout = '2s'; ALTER TABLE t ADD CONSTRAINT c CHECK (a IS NOT NULL) NOT VALID;"
    )
    (tmp_path / "2.sql").write_text("ALTER TABLE t VALIDATE CONSTRAINT c;")
    (tmp_path / "3.sql").write_text("SET lock_timeout = '2s'; ALTER TABLE t ALTER COLUMN a SET NOT NULL;")
    result = lint_files([str(tmp_path / n) for n in ("1.sql", "2.sql", "3.sql")], LintSettings())
    assert [f.rule for f in result.findings] == []
    result = lint_files([str(tmp_path / n) for n in ("1.sql", "3.sql")], LintSettings())
    assert [f.rule for f in result.findings] == ["MIG011", "MIG032"]


def test_syntax_error_is_mig000_with_position() -> None:
    findings, _ = lint_sql("SELECT 1;\nALTER TABLE t ADD COLUMN;\n")
    assert [(f.rule, f.severity, f.line) for f in findings] == [("MIG000", "error", 2)]
    assert "syntax error" in findings[0].message
    assert findings[0].column == len("ALTER TABLE t ADD COLUMN") + 1


@pytest.mark.parametrize(
    "sql",
    [
        "\\echo use CREATE EXTENSION\nSELECT 1;",
        "SELECT 'unterminated",
        "SELECT $$",
        "SELECT 1 /* open",
        "\x00",
    ],
)
def test_broken_input_is_a_clean_mig000(sql: str) -> None:
    findings, _ = lint_sql(sql)
    assert [f.rule for f in findings] == ["MIG000"]


def test_rules_and_disabled_settings() -> None:
    sql = "ALTER TABLE t DROP COLUMN a; DROP INDEX i;"
    assert sorted(rules_of(sql, only={"MIG005"})) == ["MIG005"]
    assert "MIG005" not in rules_of(sql, disabled={"MIG005"})
    findings, _ = lint_sql(sql, severity={"MIG015": "error"}, disabled={"MIG027"})
    assert {f.rule: f.severity for f in findings} == {"MIG005": "error", "MIG015": "error"}


def test_large_non_ascii_file_positions() -> None:
    """Thousands of statements after multibyte text: right positions, linear time (no hang)."""
    lines = [f"INSERT INTO t VALUES ('é{i}✓');" for i in range(20000)]
    lines.append("ALTER TABLE t DROP COLUMN a;")
    findings, _ = lint_sql("\n".join(lines), disabled={"MIG027"})
    assert [(f.rule, f.line, f.column) for f in findings] == [("MIG005", 20001, 1)]
    findings, _ = lint_sql(
        "SELECT 'ü';\nSELECT 'ß'; DROP INDEX i; SELECT '✓'; DROP TABLE x;", disabled={"MIG027"}
    )
    assert [(f.rule, f.line, f.column) for f in findings] == [("MIG015", 2, 13), ("MIG017", 2, 39)]
