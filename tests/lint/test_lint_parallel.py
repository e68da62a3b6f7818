"""Two-process linting (`pgtool.lint.parallel`) gives exactly the findings of one process."""

from __future__ import annotations

from pathlib import Path

from pgtool.lint import parallel
from pgtool.lint.context import RunState
from pgtool.lint.engine import lint_files
from pgtool.lint.settings import LintSettings

INDEPENDENT = [
    "CREATE INDEX i{n} ON accounts (x{n});",
    "ALTER TABLE accounts ADD COLUMN c{n} uuid DEFAULT gen_random_uuid();",
    "ALTER TABLE t{n} ADD CONSTRAINT k{n} CHECK (a > 0) NOT VALID;",
    "SET lock_timeout = '2s';\nALTER TABLE accounts ALTER COLUMN email SET NOT NULL;",
    "CREATE TABLE n{n} (id int PRIMARY KEY);\nCREATE INDEX ni{n} ON n{n} (id);",
]


def corpus(folder: Path, count: int, late: dict[int, str] | None = None) -> list[str]:
    folder.mkdir()
    paths = []
    for i in range(count):
        sql = (late or {}).get(i) or INDEPENDENT[i % len(INDEPENDENT)].format(n=i)
        path = folder / f"{i:03d}.sql"
        path.write_text(sql + "\n")
        paths.append(str(path))
    return paths


def test_two_processes_give_the_same_findings(tmp_path: Path) -> None:
    paths = corpus(tmp_path / "m", 40)
    one = lint_files(paths, LintSettings(), jobs=1)
    two = lint_files(paths, LintSettings(), jobs=2)
    assert one.findings and one.findings == two.findings
    assert (one.files, one.errors, one.warnings) == (two.files, two.errors, two.warnings)


def test_a_fact_from_the_first_half_reaches_the_second(tmp_path: Path) -> None:
    # File 1 validates CHECK (email IS NOT NULL) on users; the last file's SET NOT NULL relies on it
    # (no MIG011). Linted alone from an empty state, the last file would report MIG011.
    late = {
        1: "ALTER TABLE users ADD CONSTRAINT e CHECK (email IS NOT NULL) NOT VALID;\n"
        "COMMIT;\nALTER TABLE users VALIDATE CONSTRAINT e;",
        39: "SET lock_timeout = '2s';\nALTER TABLE users ALTER COLUMN email SET NOT NULL;",
        2: "CREATE FUNCTION f() RETURNS int LANGUAGE sql STABLE AS 'SELECT 1';",
        38: "ALTER TABLE accounts ADD COLUMN z int DEFAULT f();",  # STABLE: no MIG002
    }
    paths = corpus(tmp_path / "m", 40, late)
    alone = lint_files(paths[38:], LintSettings(), jobs=1)
    assert {"MIG011", "MIG002"} <= {f.rule for f in alone.findings}
    one = lint_files(paths, LintSettings(), jobs=1)
    two = lint_files(paths, LintSettings(), jobs=2)
    assert one.findings == two.findings
    last = {f.rule for f in two.findings if f.path in paths[38:]}
    assert "MIG011" not in last and "MIG002" not in last


def test_recorded_lookups_conflict_only_with_keys_the_state_holds() -> None:
    log: set[tuple[str, object]] = set()
    speculative = parallel.recording_state(log)
    assert ("users", "email") not in speculative.not_null_checks
    assert speculative.functions.get("f") is None
    speculative.checks.setdefault("orders", []).append({"a"})  # a write, not a read
    truth = RunState()
    truth.checks["orders"] = [{"b"}]
    assert not parallel.conflicts(log, truth)
    truth.functions["f"] = "stable"
    assert parallel.conflicts(log, truth)
