"""Rules the engine reports itself, with no rule function: MIG000 (the file does not parse) and the
ignore-comment rules MIG090-MIG092 (see pgtool.lint.ignores)."""

from __future__ import annotations

from pgtool.lint.rules import ERROR, declare

declare(
    "MIG000",
    "syntax-error",
    severity=ERROR,
    title="syntax error",
    lock="none",
    fix="fix the SQL so PostgreSQL's parser accepts it",
    fires=["SELEC 1;", "SELECT 1;\nALTER TABLE t ADD COLUMN;", "SELECT 'unterminated", "\\echo x\nSELECT 1;"],
    passes=["SELECT 1;", "SELECT " + "abs(" * 400 + "1" + ")" * 400 + ";", "\ufeffSELECT 1;"],
)
# The ignore-comment rules (pgtool.lint.ignores), all lock-free warnings about the comment itself:
# (id, slug, title, fix, fires, passes).
IGNORE_RULES = (
    (
        "MIG090",
        "ignore-without-reason",
        "ignore comment without a reason (not applied)",
        'add reason="why this is safe" to the migration-lint comment',
        ["-- migration-lint: ignore=MIG005\nALTER TABLE t DROP COLUMN a;"],
        ['-- migration-lint: ignore=MIG005 reason="unused"\nALTER TABLE t DROP COLUMN a;'],
    ),
    (
        "MIG091",
        "ignore-unused",
        "ignore comment that suppresses nothing",
        "remove the migration-lint comment, or move it to the line before the statement",
        ['-- migration-lint: ignore=MIG005 reason="x"\nSELECT 1;'],
        ['-- migration-lint: ignore=MIG005 reason="unused"\nALTER TABLE t DROP COLUMN a;'],
    ),
    (
        "MIG092",
        "ignore-malformed",
        "malformed ignore comment",
        'write -- migration-lint: ignore=MIG001,MIG003 reason="..."',
        ['-- migration-lint: ignore=MIG999 reason="x"\nSELECT 1;', "-- migration-lint: nonsense\nSELECT 1;"],
        ["-- migration lint is great\nSELECT 1;"],
    ),
)
for rule_id, slug, title, fix, fires, passes in IGNORE_RULES:
    declare(rule_id, slug, title=title, lock="none", fix=fix, fires=fires, passes=passes)
