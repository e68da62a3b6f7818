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
declare(
    "MIG090",
    "ignore-without-reason",
    title="ignore comment without a reason (not applied)",
    lock="none",
    fix='add reason="why this is safe" to the migration-lint comment',
    fires=["-- migration-lint: ignore=MIG005\nALTER TABLE t DROP COLUMN a;"],
    passes=['-- migration-lint: ignore=MIG005 reason="unused"\nALTER TABLE t DROP COLUMN a;'],
)
declare(
    "MIG091",
    "ignore-unused",
    title="ignore comment that suppresses nothing",
    lock="none",
    fix="remove the migration-lint comment, or move it to the line before the statement",
    fires=['-- migration-lint: ignore=MIG005 reason="x"\nSELECT 1;'],
    passes=['-- migration-lint: ignore=MIG005 reason="unused"\nALTER TABLE t DROP COLUMN a;'],
)
declare(
    "MIG092",
    "ignore-malformed",
    title="malformed ignore comment",
    lock="none",
    fix='write -- migration-lint: ignore=MIG001,MIG003 reason="..."',
    fires=[
        '-- migration-lint: ignore=MIG999 reason="x"\nSELECT 1;',
        "-- migration-lint: nonsense\nSELECT 1;",
    ],
    passes=["-- migration lint is great\nSELECT 1;"],
)
