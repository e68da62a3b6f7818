"""Ignore comments: per statement, per file, reason mandatory, unused and malformed ones reported."""

from __future__ import annotations

from lint_helpers import lint_sql


def run(sql: str):
    findings, suppressed = lint_sql(sql, disabled={"MIG027", "MIG032"})
    return [f.rule for f in findings], [(f.rule, f.reason) for f in suppressed]


def test_line_comment_before_statement_suppresses_it_only() -> None:
    found, suppressed = run(
        '-- migration-lint: ignore=MIG005 reason="unused since v42"\n'
        "ALTER TABLE t DROP COLUMN a;\n"
        "ALTER TABLE t DROP COLUMN b;\n"
    )
    assert found == ["MIG005"]
    assert suppressed == [("MIG005", "unused since v42")]


def test_block_comment_and_several_rules() -> None:
    found, suppressed = run(
        "/* migration-lint: ignore=MIG003,MIG005 reason='tiny table' */\n"
        "ALTER TABLE t ALTER COLUMN a TYPE bigint, DROP COLUMN b;"
    )
    assert found == []
    assert sorted(suppressed) == [("MIG003", "tiny table"), ("MIG005", "tiny table")]


def test_multiline_block_comment_and_blank_lines() -> None:
    found, _ = run('/*\n * migration-lint: ignore=MIG001 reason="12 rows"\n */\n\nCREATE INDEX i ON t (a);')
    assert found == []


def test_comment_after_statement_on_same_line_applies_to_it() -> None:
    found, suppressed = run(
        'ALTER TABLE t DROP COLUMN a; -- migration-lint: ignore=MIG005 reason="gone"\nDROP INDEX i;'
    )
    assert found == ["MIG015"]
    assert suppressed == [("MIG005", "gone")]


def test_missing_reason_does_not_apply_and_is_reported() -> None:
    found, suppressed = run("-- migration-lint: ignore=MIG005\nALTER TABLE t DROP COLUMN a;")
    assert sorted(found) == ["MIG005", "MIG090"]
    assert suppressed == []
    found, _ = run('-- migration-lint: ignore=MIG005 reason=""\nALTER TABLE t DROP COLUMN a;')
    assert sorted(found) == ["MIG005", "MIG090"]


def test_unused_ignore_is_reported() -> None:
    found, suppressed = run('-- migration-lint: ignore=MIG001 reason="x"\nALTER TABLE t DROP COLUMN a;')
    assert sorted(found) == ["MIG005", "MIG091"]
    assert suppressed == []
    found, _ = run('SELECT 1;\n-- migration-lint: ignore=MIG005 reason="at the end, before nothing"\n')
    assert found == ["MIG091"]


def test_unknown_rule_and_malformed_comments() -> None:
    found, _ = run('-- migration-lint: ignore=MIG999 reason="x"\nSELECT 1;')
    assert found == ["MIG092"]
    found, _ = run('-- migration-lint: ignore=MIG005 reason="unclosed\nALTER TABLE t DROP COLUMN a;')
    assert sorted(found) == ["MIG005", "MIG092"]
    found, _ = run("-- migration-lint: please ignore\nSELECT 1;")
    assert found == ["MIG092"]


def test_file_wide_ignore() -> None:
    found, suppressed = run(
        "ALTER TABLE t DROP COLUMN a;\n"
        '-- migration-lint: ignore-file=MIG005 reason="cleanup release"\n'
        "ALTER TABLE u DROP COLUMN b;"
    )
    assert found == []
    assert [r for r, _ in suppressed] == ["MIG005", "MIG005"]


def test_file_wide_ignore_needs_a_reason() -> None:
    found, _ = run("-- migration-lint: ignore-file=MIG005\nALTER TABLE u DROP COLUMN b;")
    assert sorted(found) == ["MIG005", "MIG090"]


def test_marker_in_a_string_literal_is_not_an_ignore() -> None:
    found, suppressed = run(
        "SELECT '-- migration-lint: ignore=MIG005 reason=\"x\"';\nALTER TABLE t DROP COLUMN a;"
    )
    assert found == ["MIG005"]
    assert suppressed == []


def test_ignore_for_a_disabled_rule_is_not_reported_unused() -> None:
    findings, _ = lint_sql(
        '-- migration-lint: ignore=MIG027 reason="runner sets it"\nSELECT 1;', disabled={"MIG027"}
    )
    assert findings == []


def test_comment_between_statements_on_one_line_applies_to_the_next() -> None:
    found, suppressed = run(
        'SELECT 1; /* migration-lint: ignore=MIG005 reason="gone" */ ALTER TABLE t DROP COLUMN a; '
        "DROP INDEX i;"
    )
    assert found == ["MIG015"]
    assert suppressed == [("MIG005", "gone")]
