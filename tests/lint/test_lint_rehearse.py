"""`pgtool lint --rehearse DSN` on a real cluster: a throwaway copy, measured statement by statement."""

from __future__ import annotations

import io
import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pgharness import pgtool_argv, retry
from pgtool.errors import OperationError
from pgtool.lint.run import run_lint


@pytest.fixture
def populated(database: Any) -> Any:
    database.execute("CREATE TABLE public.t (id int PRIMARY KEY, v int NOT NULL)")
    database.execute("INSERT INTO public.t SELECT g, g FROM pg_catalog.generate_series(1, 20000) g")
    return database


def rehearse(database: Any, migration: Path) -> tuple[int, dict[str, Any]]:
    out = io.StringIO()
    code = run_lint([str(migration)], output_format="json", rehearse=database.dsn, out=out)
    return code, json.loads(out.getvalue())["rehearsal"]


def copies(database: Any) -> list[str]:
    rows = database.execute(
        "SELECT datname FROM pg_catalog.pg_database WHERE datname LIKE 'pgtool\\_rehearse\\_%'"
    )
    return [row[0] for row in rows]


def test_rewrite_on_a_populated_table_is_measured_and_copy_dropped(populated: Any, tmp_path: Path) -> None:
    migration = tmp_path / "001.sql"
    migration.write_text(
        "SET lock_timeout = '5s';\n"
        "ALTER TABLE t ALTER COLUMN v TYPE bigint;\n"  # MIG003: rewrite under ACCESS EXCLUSIVE
        "ALTER TABLE t ADD COLUMN note text;\n"  # no rewrite, ACCESS EXCLUSIVE by the lock model
    )
    code, report = rehearse(populated, migration)
    _set, retype, add = report["statements"]
    assert retype["status"] == "ok"
    assert retype["rewritten"] == ["public.t"]
    assert {
        "relation": "public.t",
        "mode": "ACCESS EXCLUSIVE",
        "granted": True,
        "created_by_migration": False,
    } in (retype["locks"])
    assert retype["predicted"]["rewrite"] and "MIG003" in retype["predicted"]["rules"]
    assert retype["mismatches"] == []
    assert retype["wal_bytes"] > 20000 * 20  # every row written again
    assert add["rewritten"] == [] and add["mismatches"] == []
    assert report["copy_dropped"] and report["copy"] not in copies(populated)
    assert code == 1  # MIG003 is an error-level finding
    # The template itself is untouched.
    assert populated.execute(
        "SELECT pg_catalog.format_type(atttypid, NULL) FROM pg_catalog.pg_attribute "
        "WHERE attrelid = 'public.t'::pg_catalog.regclass AND attname = 'v'"
    ) == [("integer",)]


def test_a_lock_that_blocks_the_probe_reports_the_wait(populated: Any, tmp_path: Path) -> None:
    migration = tmp_path / "002.sql"
    migration.write_text(
        "SET lock_timeout = '5s';\n"
        "DO $$ BEGIN LOCK TABLE public.t IN ACCESS EXCLUSIVE MODE;\n"
        "  PERFORM pg_catalog.pg_sleep(0.5); END $$;\n"
        # Dynamic SQL the linter cannot read: its lock is a mismatch.
        "DO $$ BEGIN LOCK TABLE public.t IN ACCESS SHARE MODE;\n"
        "  EXECUTE 'LOCK TABLE public.t IN ' || 'SHARE MODE'; PERFORM pg_catalog.pg_sleep(0.5); END $$;\n"
    )
    _code, report = rehearse(populated, migration)
    _set, blocking, dynamic = report["statements"]
    assert blocking["probe_table"] == "public.t"
    assert blocking["reader_blocked_s"] > 0 and blocking["writer_blocked_s"] > 0
    assert blocking["predicted"]["lock"] == "ACCESS EXCLUSIVE" and blocking["mismatches"] == []
    # SHARE lets reads through and stops writes.
    assert dynamic["reader_blocked_s"] == 0 and dynamic["writer_blocked_s"] > 0
    assert dynamic["predicted"]["lock"] == "ACCESS SHARE"  # the EXECUTEd SHARE lock is unseen (MIG028)
    assert any("predicted ACCESS SHARE (MIG008), took SHARE on public.t" in m for m in dynamic["mismatches"])
    assert report["copy"] not in copies(populated)


def test_failed_statement_stops_the_run_and_still_drops_the_copy(populated: Any, tmp_path: Path) -> None:
    migration = tmp_path / "003.sql"
    migration.write_text("ALTER TABLE missing ADD COLUMN a int;\nALTER TABLE t ADD COLUMN b int;\n")
    code, report = rehearse(populated, migration)
    first, second = report["statements"]
    assert first["status"] == "failed" and "missing" in first["error"]
    assert second["status"] == "not run"
    assert code == 1 and report["failed"] == 1
    assert copies(populated) == []


def test_template_in_use_is_refused(populated: Any, tmp_path: Path) -> None:
    migration = tmp_path / "004.sql"
    migration.write_text("ALTER TABLE t ADD COLUMN b int;\n")
    with populated.connect(), pytest.raises(OperationError, match="other sessions are connected"):
        rehearse(populated, migration)
    assert copies(populated) == []


def test_sigterm_drops_the_copy(populated: Any, tmp_path: Path) -> None:
    migration = tmp_path / "005.sql"
    migration.write_text("SELECT pg_catalog.pg_sleep(60);\n")
    proc = subprocess.Popen(
        [*pgtool_argv(), "lint", str(migration), "--rehearse", populated.dsn],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        retry(lambda: copies(populated), timeout=60)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0, err
    assert copies(populated) == [], err


def test_text_report(populated: Any, tmp_path: Path) -> None:
    migration = tmp_path / "006.sql"
    migration.write_text("SET lock_timeout = '5s';\nVACUUM (FULL) t;\n")
    out = io.StringIO()
    code = run_lint([str(migration)], rehearse=populated.dsn, out=out)
    text = out.getvalue()
    assert "rehearsal on pgtool_rehearse_" in text and f"a copy of {populated.name}" in text
    assert "rewrote public.t" in text and "ACCESS EXCLUSIVE on public.t;" in text
    assert "predicted: ACCESS EXCLUSIVE, a rewrite (" in text
    assert "0 mismatch(es), 0 failed; copy dropped" in text
    assert code == 1


def test_many_statements_percent_signs_and_concurrently(populated: Any, tmp_path: Path) -> None:
    migration = tmp_path / "007.sql"
    adds = "".join(f"ALTER TABLE t ADD COLUMN c{i} int;\n" for i in range(6))
    migration.write_text(
        f"SET lock_timeout = '5s';\n{adds}COMMENT ON TABLE t IS '50% done';\n"
        "CREATE INDEX CONCURRENTLY t_v ON t (v);\n"
    )
    _code, report = rehearse(populated, migration)
    assert [s["status"] for s in report["statements"]] == ["ok"] * 9
    concurrently = report["statements"][-1]
    assert concurrently["in_transaction"] is False  # PostgreSQL refuses it in a transaction block
    assert concurrently["predicted"]["lock"] == "SHARE UPDATE EXCLUSIVE"
    assert copies(populated) == []
