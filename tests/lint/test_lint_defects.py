"""The defects issue 21 found in the linter, each pinned: option values, REINDEX forms, statements
PostgreSQL refuses in a transaction block, MIG011 by version, a new enum value used too early, input
that is not a regular file or too large, memory on a large file, and parser edges."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from lint_helpers import lint_sql, rules_of

from pgharness import run_pgtool

# VACUUM's and REINDEX's boolean options, as PostgreSQL's defGetBoolean reads them.
OFF = ["FALSE", "false", "off", "OFF", "0", "'false'", "'off'"]
ON = ["", " TRUE", " on", " 1", " 'true'"]


@pytest.mark.parametrize("value", OFF)
def test_vacuum_full_off_is_not_a_rewrite(value: str) -> None:
    sql = f"VACUUM (FULL {value}) orders;"
    found = rules_of(sql)
    assert "MIG020" not in found and "MIG027" not in found, (sql, found)


@pytest.mark.parametrize("value", ON)
def test_vacuum_full_on_is_a_rewrite(value: str) -> None:
    assert "MIG020" in rules_of(f"VACUUM (FULL{value}) orders;")


@pytest.mark.parametrize("value", ["0", "false", "off", "'false'"])
def test_reindex_concurrently_off_is_blocking_and_transactional(value: str) -> None:
    assert rules_of(f"REINDEX (CONCURRENTLY {value}) INDEX i;", disabled={"MIG027"}) == ["MIG016"]
    # it may share a file: no false MIG007
    assert "MIG007" not in rules_of(f"SELECT 1; REINDEX (CONCURRENTLY {value}) INDEX i;")


def test_reindex_concurrently_on_forms() -> None:
    for sql in ("REINDEX (CONCURRENTLY) INDEX i;", "REINDEX (CONCURRENTLY 1) INDEX i;"):
        assert rules_of(sql) == []
        assert rules_of(f"SELECT 1; {sql}") == ["MIG007"]


def test_reindex_system_is_not_told_to_use_concurrently() -> None:
    findings, _ = lint_sql("REINDEX SYSTEM app;", disabled={"MIG027"})
    assert [f.rule for f in findings] == ["MIG016"]
    assert "CONCURRENTLY" not in findings[0].fix
    assert "cannot be done CONCURRENTLY" in findings[0].message
    findings, _ = lint_sql("REINDEX TABLE orders;", disabled={"MIG027"})
    assert "CONCURRENTLY" in findings[0].fix


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE DATABASE app2",
        "DROP DATABASE app2",
        "ALTER SYSTEM SET work_mem = '64MB'",
        "REINDEX DATABASE app",
        "REINDEX SCHEMA public",
        "CREATE TABLESPACE fast LOCATION '/srv/fast'",
        "DROP TABLESPACE fast",
        "ALTER DATABASE app SET TABLESPACE fast",
    ],
)
def test_mig007_statements_refused_in_a_transaction(statement: str) -> None:
    findings, _ = lint_sql(f"SET lock_timeout = '2s';\n{statement};")
    mig007 = [f for f in findings if f.rule == "MIG007"]
    assert len(mig007) == 1, [(f.rule, f.message) for f in findings]
    assert mig007[0].lock and "CONCURRENTLY" not in mig007[0].fix
    assert "MIG007" not in rules_of(f"{statement};")


def test_alter_type_add_value_before_12_is_non_transactional() -> None:
    sql = "SELECT 1; ALTER TYPE status ADD VALUE 'x';"
    assert "MIG007" in rules_of(sql, pg_version=11)
    assert "MIG007" not in rules_of(sql, pg_version=12)
    assert "MIG007" not in rules_of("SELECT 1; ALTER TYPE status RENAME VALUE 'a' TO 'b';", pg_version=11)


@pytest.mark.all_versions
def test_mig007_premise_create_database_on_postgresql(database) -> None:
    import psycopg

    with database.connect(autocommit=True) as conn:
        for statement in ("CREATE DATABASE pgtool_lint_never", "ALTER SYSTEM SET work_mem = '64MB'"):
            with pytest.raises(psycopg.errors.ActiveSqlTransaction):
                conn.execute(f"SELECT 1; {statement}")


def test_mig011_respects_pg_version() -> None:
    sql = (
        "ALTER TABLE t ADD CONSTRAINT c CHECK (a IS NOT NULL);\n"
        "SET lock_timeout = '2s'; ALTER TABLE t ALTER COLUMN a SET NOT NULL;"
    )
    assert "MIG011" not in rules_of(sql, pg_version=12)
    assert "MIG011" not in rules_of(sql, pg_version=18)
    findings, _ = lint_sql(sql, pg_version=11)
    [finding] = [f for f in findings if f.rule == "MIG011"]
    assert "PostgreSQL 11 does not use the validated CHECK" in finding.message


ENUM_USED = [
    "ALTER TYPE status ADD VALUE 'shipped'; UPDATE orders SET status = 'shipped' WHERE id = 1;",
    "ALTER TYPE s.status ADD VALUE IF NOT EXISTS 'shipped' AFTER 'paid';\n"
    "INSERT INTO orders (status) VALUES ('shipped'::s.status);",
    "BEGIN; ALTER TYPE status ADD VALUE 'x'; SELECT 'x'::status; COMMIT;",
]
ENUM_SAFE = [
    "ALTER TYPE status ADD VALUE 'shipped';",
    "ALTER TYPE status ADD VALUE 'shipped'; COMMIT; UPDATE orders SET status = 'shipped' WHERE id = 1;",
    "ALTER TYPE status ADD VALUE 'a'; ALTER TYPE status ADD VALUE 'b' AFTER 'a';",
    "ALTER TYPE status RENAME VALUE 'a' TO 'b'; SELECT 'b'::status;",
]


@pytest.mark.parametrize("sql", ENUM_USED)
def test_new_enum_value_used_in_its_transaction(sql: str) -> None:
    assert rules_of(sql).count("MIG030") == 1, sql


@pytest.mark.parametrize("sql", ENUM_SAFE)
def test_new_enum_value_used_later_is_fine(sql: str) -> None:
    assert "MIG030" not in rules_of(sql), sql


def test_new_enum_value_of_a_type_created_in_the_transaction() -> None:
    sql = "CREATE TYPE fresh AS ENUM ('new'); ALTER TYPE fresh ADD VALUE 'x'; SELECT 'x'::fresh;"
    assert "MIG030" not in rules_of(sql, pg_version=17)
    assert "MIG030" in rules_of(sql, pg_version=15)


@pytest.mark.all_versions
def test_mig030_premise_on_postgresql(database) -> None:
    import psycopg

    fresh = "CREATE TYPE fresh AS ENUM ('new'); ALTER TYPE fresh ADD VALUE 'x'; SELECT 'x'::fresh"

    with database.connect(autocommit=True) as conn:
        conn.execute("CREATE TYPE status AS ENUM ('new'); CREATE TABLE orders (id int, status status)")
        with pytest.raises(psycopg.errors.UnsafeNewEnumValueUsage):
            conn.execute(ENUM_USED[0].replace("status = 'shipped' WHERE id = 1", "status = 'shipped'"))
        conn.execute(ENUM_SAFE[1])
        if database.major >= 17:
            conn.execute(fresh)
        else:
            with pytest.raises(psycopg.errors.UnsafeNewEnumValueUsage):
                conn.execute(fresh)
        conn.execute("ALTER TYPE status ADD VALUE 'a'; ALTER TYPE status ADD VALUE 'b' AFTER 'a'")


# -- input limits ---------------------------------------------------------------------------


def test_device_fifo_and_symlink_loop_are_usage_errors(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.sql"
    os.mkfifo(fifo)
    (tmp_path / "loop_a.sql").symlink_to(tmp_path / "loop_b.sql")
    (tmp_path / "loop_b.sql").symlink_to(tmp_path / "loop_a.sql")
    (tmp_path / "dangling.sql").symlink_to(tmp_path / "nowhere.sql")
    cases = {
        "/dev/zero": "it is a character device, not a regular file",
        str(fifo): "it is a FIFO, not a regular file",
        str(tmp_path / "loop_a.sql"): "symbolic link loop",
        str(tmp_path / "dangling.sql"): "symbolic link to a missing file",
    }
    for path, message in cases.items():
        proc = run_pgtool("lint", path, timeout=60)
        assert proc.returncode == 2, (path, proc.stderr[-500:])
        assert message in proc.stderr, (path, proc.stderr[-500:])
        assert "Traceback" not in proc.stderr


def test_fifo_inside_a_directory_does_not_hang(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "001.sql")
    proc = run_pgtool("lint", str(tmp_path), timeout=60)
    assert proc.returncode == 2 and "FIFO" in proc.stderr


def test_size_limit_and_option_to_raise_it(tmp_path: Path) -> None:
    big = tmp_path / "big.sql"
    big.write_text("SELECT 1;\n" * 1000)  # 10,000 bytes
    proc = run_pgtool("lint", "--max-file-size", "5k", str(big), timeout=60)
    assert proc.returncode == 2 and "over the 5120-byte limit" in proc.stderr
    assert "--max-file-size" in proc.stderr  # the hint
    assert run_pgtool("lint", "--max-file-size", "10k", str(big), timeout=60).returncode == 0
    bad = run_pgtool("lint", "--max-file-size", "lots", str(big), timeout=60)
    assert bad.returncode == 2 and "--max-file-size must be a size" in bad.stderr


MEASURE = textwrap.dedent(
    """
    import io, json, resource, sys
    from pgtool.lint.run import run_lint
    run_lint([sys.argv[1]], out=io.StringIO())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = io.StringIO()
    code = run_lint([sys.argv[2]], out=out, output_format="json", max_file_size="64MB")
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"code": code, "grew_kb": after - before, "out": json.loads(out.getvalue())}))
    """
)


def test_memory_stays_a_small_multiple_of_a_large_file(tmp_path: Path) -> None:
    """A 4 MB file once took about 90 times its size; now its tree is built a chunk at a time."""
    small = tmp_path / "small.sql"
    small.write_text("SELECT 1;\n")
    big = tmp_path / "big.sql"
    rows = [f"INSERT INTO t (a, b) VALUES ({i}, 'row {i} é');" for i in range(80_000)]
    big.write_text("\n".join(rows) + "\nALTER TABLE t DROP COLUMN a;\n")
    size_kb = big.stat().st_size // 1024
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, str(small), str(big)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    # the findings are right: the last statement, on its line
    assert [(f["rule"], f["line"]) for f in result["out"]["findings"]] == [
        ("MIG005", 80_001),
        ("MIG027", 80_001),
    ]
    assert result["grew_kb"] < 12 * size_kb, (result["grew_kb"], size_kb)


def test_large_file_chunks_keep_statements_whole(tmp_path: Path) -> None:
    """Chunk cuts fall after a `;` ending a line; strings, dollar quotes and BEGIN ATOMIC bodies with
    such lines inside them must stay whole, and positions must stay right."""
    from pgtool.lint import parse

    filler = "SELECT 1;\n" * (parse.CHUNK // 10)
    tricky = (
        "INSERT INTO t VALUES ('a;\nb');\n"
        "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN\nRETURN 1;\nEND $$;\n"
        "CREATE FUNCTION g() RETURNS int LANGUAGE sql BEGIN ATOMIC\nSELECT 1;\nSELECT 2;\nEND;\n"
        "/* a comment;\n*/ SELECT 2;\n"
    )
    text = (filler + tricky) * 10 + "ALTER TABLE t DROP COLUMN a;\n"
    assert len(text) > parse.SMALL
    small_count = sum(1 for _ in parse.statements(filler + tricky))
    assert sum(1 for _ in parse.statements(text)) == small_count * 10 + 1
    findings, _ = lint_sql(text, disabled={"MIG027"})
    assert [(f.rule, f.line) for f in findings] == [("MIG005", text.count("\n"))]


def test_syntax_error_in_a_large_file_has_its_position() -> None:
    from pgtool.lint import parse

    lines = ["SELECT 1;"] * (parse.SMALL // 10 + 5000)
    lines[len(lines) // 2] = "SELEC 1;"
    findings, _ = lint_sql("\n".join(lines))
    assert [(f.rule, f.line, f.column) for f in findings] == [("MIG000", len(lines) // 2 + 1, 1)]


# -- parser edges -------------------------------------------------------------------------------


def test_deeply_nested_calls_parse() -> None:
    sql = "SELECT " + "abs(" * 400 + "1" + ")" * 400 + ";\nALTER TABLE t DROP COLUMN a;"
    assert rules_of(sql, disabled={"MIG027"}) == ["MIG005"]
    default = "ALTER TABLE t ADD COLUMN b int DEFAULT " + "abs(" * 400 + "1" + ")" * 400 + ";"
    assert rules_of(default, disabled={"MIG027"}) == []
    assert sys.getrecursionlimit() < 5000  # raised only while decoding


@pytest.mark.all_versions
def test_nested_calls_premise_on_postgresql(database) -> None:
    with database.connect(autocommit=True) as conn:
        assert conn.execute("SELECT " + "abs(" * 400 + "1" + ")" * 400).fetchone() == (1,)


def test_utf8_bom_is_stripped(tmp_path: Path) -> None:
    path = tmp_path / "bom.sql"
    path.write_bytes(b"\xef\xbb\xbfALTER TABLE t DROP COLUMN a;\n")
    proc = run_pgtool("lint", "--format", "json", "--exclude", "MIG027", str(path), timeout=60)
    findings = json.loads(proc.stdout)["findings"]
    assert [(f["rule"], f["line"], f["column"]) for f in findings] == [("MIG005", 1, 1)]
