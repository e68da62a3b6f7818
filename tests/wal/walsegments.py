"""Real WAL segments for the WAL tests (imported by tests/wal/conftest.py and the tests)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any


def complete_segment(cluster: Any, dest_dir: Path) -> tuple[Path, str]:
    """Make the server finish its current segment; copy it to dest_dir; return (copy, WAL name)."""
    with cluster.connect(pin="off") as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS wal_fixture(x int)")
        conn.execute("INSERT INTO wal_fixture SELECT generate_series(1, 1000)")
        name = conn.execute("SELECT pg_walfile_name(pg_current_wal_insert_lsn())").fetchone()[0]
        conn.execute("SELECT pg_switch_wal()")
    copy = dest_dir / f"src-{name}"
    shutil.copyfile(cluster.data_dir / "pg_wal" / name, copy)
    return copy, name
