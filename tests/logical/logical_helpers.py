"""Helpers for the logical backup/verify tests: run the CLI, inspect dumps, fake old ones."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pgharness import pgtool_argv, retry, run_pgtool
from pgtool.logical import dumps
from pgtool.logical.dump_manifest import checksum_line, sha256_file


def backup(cluster: Any, dest: Path, *names: str, extra: tuple[str, ...] = (), dsn: str | None = None) -> Any:
    args = ["backup", "--dsn", dsn or cluster.dsn(), "--dest", str(dest)]
    for name in names:
        args += ["--database", name]
    return run_pgtool(*args, *extra)


def verify(
    cluster: Any, backup_dir: Path, *names: str, extra: tuple[str, ...] = (), target: bool = False
) -> Any:
    """`pgtool verify`: by default in its own cluster (--dsn given, and ignored); with `target`, on
    `cluster` through --target-dsn (throwaway databases there, as on a scratch server)."""
    args = ["verify", "--target-dsn" if target else "--dsn", cluster.dsn(), "--backup-dir", str(backup_dir)]
    for name in names:
        args += ["--database", name]
    return run_pgtool(*args, *extra)


def newest_dump(backup_dir: Path, database: str) -> Path:
    return dumps.list_dumps(backup_dir)[database][-1].path


def forget_statement_texts(cluster: Any) -> None:
    """Reset the shared cluster's pg_stat_statements after a test ran 8-bit statements in a SQL_ASCII
    database: their texts would make every later reader of the texts in a UTF8 database fail (see
    tests/ops/test_ops_top_encoding.py), and other tests' `top` runs would see no text."""
    with cluster.connect() as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute("SELECT public.pg_stat_statements_reset()")


def throwaway_databases(cluster: Any) -> list[str]:
    with cluster.connect() as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'pgtool\\_verify\\_%'")
        return [r[0] for r in rows.fetchall()]


def clone_dump(dump: Path, *, days_ago: float, database: str | None = None, into: Path | None = None) -> Path:
    """A copy of a complete dump under another stamp (and database directory), as pgtool would name it.

    The copy's checksum is recomputed and its manifest updated to name the copy (and `database`).
    """
    manifest = json.loads(dumps.manifest_path(dump).read_text())
    database = database or manifest["database"]
    stamp = dumps.format_stamp(datetime.now(UTC) - timedelta(days=days_ago))
    target_dir = into or dump.parent
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / dumps.dump_name(database, stamp)
    shutil.copyfile(dump, target)
    manifest.update({"dump_file": target.name, "stamp": stamp, "database": database})
    dumps.manifest_path(target).write_text(json.dumps(manifest))
    dumps.checksum_path(target).write_text(checksum_line(sha256_file(target), target.name))
    return target


def rewrite_manifest(dump: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = dumps.manifest_path(dump)
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def sigterm_while_running(cluster: Any, args: list[str], application_name: str) -> tuple[int, str]:
    """Run `pgtool ARGS`, send it SIGTERM once a session named `application_name` (its pg_dump or
    pg_restore child) is connected, and return (exit code, stderr)."""
    proc = subprocess.Popen(
        [*pgtool_argv(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:

        def child_connected() -> bool:
            assert proc.poll() is None, f"pgtool {args[0]} ended before it could be interrupted"
            with cluster.connect() as conn:
                return bool(
                    conn.execute(
                        "SELECT 1 FROM pg_stat_activity WHERE application_name = %s", (application_name,)
                    ).fetchall()
                )

        retry(child_connected, timeout=120, interval=0.05)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err
