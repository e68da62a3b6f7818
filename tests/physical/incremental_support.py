"""Helpers for the incremental-backup tests: a PostgreSQL 18 primary summarizing WAL, times, rows."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from physical_support import ArchivingPrimary, adopt, archive_command

from pgharness import start_cluster
from pgtool.pg.privileges import make_server_dir


def start_summarizing_primary(work_dir: Path, major: int = 18) -> ArchivingPrimary:
    """An archiving primary with summarize_wal = on (what pg_basebackup --incremental needs)."""
    archive_dir = make_server_dir(work_dir / "archive", 0o777)
    cluster = start_cluster(
        major,
        settings={
            "archive_mode": "on",
            "archive_command": archive_command(archive_dir),
            "wal_level": "replica",
            "summarize_wal": "on",
        },
    )
    return ArchivingPrimary(
        cluster=cluster, archive_dir=archive_dir, base_dir=work_dir / "base", work_dir=work_dir
    )


def server_now(primary: Any) -> str:
    """The server's clock as ISO 8601 with an offset (the form --target-time takes)."""
    time.sleep(0.05)
    text = primary.sql(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"
    )[0][0]
    time.sleep(0.05)
    return str(text)


def recovered_rows(major: int, pgdata: Path, table: str = "t") -> list[int]:
    """Start the recovered copy in `pgdata`, wait for promotion, return its rows, stop it."""
    copy = adopt(major, pgdata)
    try:
        copy.start()
        copy.wait_until_ready(180, primary=True)
        with copy.connect(pin="off") as conn:
            return [r[0] for r in conn.execute(f"SELECT i FROM {table} ORDER BY i").fetchall()]
    finally:
        copy.cleanup()


def wait_summarized(primary: ArchivingPrimary) -> None:
    """Wait until the WAL summarizer has caught up with the current insert position."""
    from pgharness import retry

    lsn = primary.sql("SELECT pg_current_wal_insert_lsn()")[0][0]

    def caught_up() -> bool:
        row = primary.sql("SELECT summarized_lsn >= %s FROM pg_get_wal_summarizer_state()", (lsn,))
        return bool(row[0][0])

    retry(caught_up, timeout=60)
