"""The verified recovery point when recovery stops at a COMMIT record (recovery_target_lsn = its LSN,
inclusive), as the base drill does when the archive's last complete record is a commit.

PostgreSQL applies that record but returns from recoveryStopsAfter before recording its time, so
pg_last_xact_replay_timestamp() is older than the commit: the cross-check must not call the commit
unreplayed."""

from __future__ import annotations

from pathlib import Path

from physical_support import ArchivingPrimary, adopt, recover

from pgtool.physical.base_catalog import list_base_backups
from pgtool.physical.base_drill import _replay_end
from pgtool.recovery import recovery_point
from pgtool.recovery.archive_continuity import check_continuity
from pgtool.wal.listing import parse_lsn


def test_a_commit_that_is_the_recovery_stop_record_is_the_verified_point(
    primary: ArchivingPrimary, work_dir: Path
) -> None:
    primary.sql("ALTER SYSTEM SET autovacuum = off")  # no background commit between ours
    primary.sql("SELECT pg_reload_conf()")
    primary.sql("CREATE TABLE t (i int PRIMARY KEY)")
    primary.sql("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
    primary.basebackup()
    primary.sql("INSERT INTO t VALUES (1)")
    before = primary.sql("SELECT pg_current_wal_insert_lsn()::text")[0][0]
    xid = primary.sql("INSERT INTO t VALUES (2) RETURNING pg_current_xact_id()::text")[0][0]
    primary.sql("INSERT INTO t VALUES (3)")
    primary.switch_wal()
    rows = primary.sql(
        "SELECT start_lsn::text FROM pg_get_wal_records_info(%s::pg_lsn, pg_current_wal_flush_lsn()) "
        "WHERE resource_manager = 'Transaction' AND record_type = 'COMMIT' AND xid::text = %s",
        (before, xid),
    )
    assert len(rows) == 1, rows
    commit_lsn = rows[0][0]

    pgdata = work_dir / "stop-at-commit"
    result = recover(primary, pgdata, "--target-lsn", commit_lsn)
    assert result.returncode == 0, result.stderr
    copy = adopt(primary.major, pgdata)
    try:
        copy.start()
        copy.wait_until_ready(120, primary=True)
        with copy.connect() as conn:
            assert [r[0] for r in conn.execute("SELECT i FROM public.t ORDER BY i")] == [1, 2]
        backup = list_base_backups(primary.base_dir)[-1]
        continuity = check_continuity(primary.archive_dir, backup)
        point = recovery_point.verified_point(
            primary.archive_dir,
            continuity,
            backup,
            _replay_end(copy),
            copy.binaries.path("pg_waldump"),
            copy,
        )
        assert point is not None and point.lsn == parse_lsn(commit_lsn)
    finally:
        copy.cleanup()
