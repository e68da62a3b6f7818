"""pgtool recover: point-in-time recovery by time and LSN, a streaming standby, and every refusal."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import psycopg
import pytest
from physical_support import ArchivingPrimary, adopt, recover

from pgharness import retry
from pgtool.physical.base_catalog import list_base_backups
from pgtool.wal.listing import list_archive


def _utc_now_text(primary: ArchivingPrimary) -> str:
    """The server's clock as ISO 8601 with an offset, the form --target-time takes."""
    return primary.sql(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"
    )[0][0]


def _rows(cluster, table: str = "t") -> list[int]:
    with cluster.connect(pin="off") as conn:
        return [r[0] for r in conn.execute(f"SELECT i FROM {table} ORDER BY i").fetchall()]


@pytest.mark.all_versions
def test_recover_to_a_time_shows_exactly_the_rows_committed_before_it(
    primary: ArchivingPrimary, work_dir: Path
) -> None:
    primary.sql("CREATE TABLE t (i int PRIMARY KEY)")
    primary.sql("INSERT INTO t SELECT generate_series(1, 10)")
    primary.basebackup()
    primary.sql("INSERT INTO t SELECT generate_series(11, 20)")  # after the backup, before the target
    time.sleep(0.05)
    target = _utc_now_text(primary)
    time.sleep(0.05)
    primary.sql("INSERT INTO t SELECT generate_series(21, 30)")  # after the target
    primary.switch_wal()

    pgdata = work_dir / "pitr"
    result = recover(primary, pgdata, "--target-time", target)
    assert result.returncode == 0, result.stderr
    assert "recovery.signal" in {p.name for p in pgdata.iterdir()}
    auto = (pgdata / "postgresql.auto.conf").read_text()
    assert "archive_mode = 'off'" in auto and "recovery_target_action = 'promote'" in auto
    assert "restore-wal %f %p --archive-dir" in auto and "archive_command" not in auto

    copy = adopt(primary.major, pgdata)
    try:
        copy.start()
        copy.wait_until_ready(120, primary=True)
        assert _rows(copy) == list(range(1, 21))
        assert list(primary.archive_dir.glob("00000002*")) == []  # the copy never archived into production
    finally:
        copy.cleanup()


def test_recover_to_an_lsn_with_the_printed_command(primary: ArchivingPrimary, work_dir: Path) -> None:
    primary.sql("CREATE TABLE t (i int PRIMARY KEY)")
    primary.basebackup()
    primary.sql("INSERT INTO t SELECT generate_series(1, 5)")
    lsn = primary.sql("SELECT pg_current_wal_insert_lsn()::text")[0][0]
    primary.sql("INSERT INTO t SELECT generate_series(6, 9)")
    primary.switch_wal()

    from pgtool.pg.cluster import free_port

    port = free_port()
    pgdata = work_dir / "pitr-lsn"
    result = recover(primary, pgdata, "--target-lsn", lsn, "--port", str(port))
    assert result.returncode == 0, result.stderr
    start = result.stdout.strip().splitlines()[-1].strip()
    assert "pg_ctl" in start and str(pgdata) in start
    subprocess.run(start, shell=True, check=True, capture_output=True, timeout=120)
    try:
        dsn = f"host=127.0.0.1 port={port} dbname=postgres user=postgres"

        def promoted() -> bool:
            with psycopg.connect(dsn) as conn:
                return not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]

        retry(promoted, timeout=120, interval=0.3)
        with psycopg.connect(dsn) as conn:
            assert [r[0] for r in conn.execute("SELECT i FROM t ORDER BY i")] == [1, 2, 3, 4, 5]
    finally:
        copy = adopt(primary.major, pgdata)
        copy.stop()
        copy.cleanup()


@pytest.mark.all_versions
def test_standby_streams_from_the_primary_and_catches_up(primary: ArchivingPrimary, work_dir: Path) -> None:
    primary.sql("CREATE TABLE t (i int PRIMARY KEY)")
    primary.sql("INSERT INTO t SELECT generate_series(1, 10)")
    primary.basebackup()
    primary.sql("INSERT INTO t SELECT generate_series(11, 20)")
    primary.switch_wal()

    pgdata = work_dir / "standby"
    conninfo = f"host=127.0.0.1 port={primary.cluster.port} user=postgres application_name=pgtool_standby"
    result = recover(primary, pgdata, "--standby", "--primary-conninfo", conninfo)
    assert result.returncode == 0, result.stderr
    assert (pgdata / "standby.signal").exists() and not (pgdata / "recovery.signal").exists()

    standby = adopt(primary.major, pgdata)
    try:
        standby.start()
        standby.wait_until_ready(120)
        primary.sql("INSERT INTO t SELECT generate_series(21, 30)")  # streamed, never archived yet
        retry(lambda: _rows(standby) == list(range(1, 31)), timeout=60)

        def streaming() -> bool:
            rows = primary.sql(
                "SELECT state FROM pg_stat_replication WHERE application_name = 'pgtool_standby'"
            )
            return rows == [("streaming",)]

        retry(streaming, timeout=60)
        with standby.connect(pin="off") as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
    finally:
        standby.cleanup()


def test_recover_refuses_bad_requests_with_one_clear_line(primary: ArchivingPrimary, work_dir: Path) -> None:
    primary.sql("CREATE TABLE t (i int PRIMARY KEY)")
    before_backup = _utc_now_text(primary)
    primary.basebackup()
    for i in range(3):
        primary.sql("INSERT INTO t VALUES (%s)", (i,))
        primary.switch_wal()
    backup = list_base_backups(primary.base_dir)[0]

    def refused(*args: str, code: int, text: str, pgdata: Path | None = None) -> None:
        result = recover(primary, pgdata or work_dir / "never", *args)
        assert result.returncode == code, (args, result.stderr)
        assert text in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert not (work_dir / "never").exists()

    busy = work_dir / "busy"
    busy.mkdir()
    (busy / "PG_VERSION").write_text("15\n")
    refused(code=2, text="is not empty", pgdata=busy)
    refused("--target-time", "2026-11-24T16:30:00", code=2, text="has no UTC offset")
    refused("--target-time", "yesterday", code=2, text="is not an ISO 8601 time")
    refused("--target-lsn", "0/1", "--target-immediate", code=2, text="at most one recovery target")
    refused("--standby", code=2, text="--standby needs --primary-conninfo")
    refused("--target-time", before_backup, code=1, text="is earlier than every base backup")
    refused("--target-lsn", "FF/0", code=1, text="beyond the end of the WAL archive")

    segments = sorted(i.name for i in list_archive(primary.archive_dir) if i.kind == "segment")
    middle = next(s for s in segments if s > backup.stop_wal_file)
    (primary.archive_dir / middle).rename(primary.archive_dir / ("moved-away-" + middle))
    refused(code=1, text=f"segment {middle} is missing")
    refused("--target-time", _utc_now_text(primary), code=1, text=f"segment {middle} is missing")
    marker = primary.archive_dir / ".pgtool-system-identifier"
    assert marker.read_text().strip() == backup.system_identifier
    marker.write_text("42\n")
    refused(code=1, text="belongs to database system 42")
    marker.write_text(backup.system_identifier + "\n")

    # The backup carries the WAL to its own end: recovering just to consistency needs no archive.
    ok = recover(primary, work_dir / "immediate", "--target-immediate")
    assert ok.returncode == 0, ok.stderr
