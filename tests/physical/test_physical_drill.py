"""The base-backup restore drill (`pgtool verify --base`): passes on a good backup, fails clearly."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pytest
from physical_support import ArchivingPrimary

from pgharness import retry
from pgtool.errors import OperationError
from pgtool.obs.metrics import RunReport
from pgtool.physical.base_catalog import list_base_backups
from pgtool.physical.base_drill import run_base_drill
from pgtool.wal.listing import list_archive, parse_lsn


def _write_and_archive(primary: ArchivingPrimary, segments: int) -> str:
    primary.sql("CREATE TABLE t (i int PRIMARY KEY, v text)")
    primary.sql("CREATE INDEX t_v ON t (v)")
    primary.basebackup()
    for n in range(segments):
        primary.sql(
            "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(%s::int, %s::int) g",
            (n * 1000, n * 1000 + 999),
        )
        last = primary.sql("SELECT pg_current_wal_insert_lsn()::text")[0][0]
        primary.switch_wal()
    return str(last)


@pytest.mark.all_versions
def test_base_drill_restores_replays_and_checks(zstd_primary: ArchivingPrimary, work_dir: Path) -> None:
    primary = zstd_primary  # replay from a compressed archive
    last_write = _write_and_archive(primary, 2)
    report = RunReport()
    scratch = work_dir / "drills"
    scratch.mkdir()
    result = run_base_drill(
        primary.base_dir, primary.archive_dir, pg_bindir=None, amcheck=True, report=report, work_dir=scratch
    )
    assert result.backup_id == list_base_backups(primary.base_dir)[-1].id
    assert result.replayed_to_lsn is not None and parse_lsn(result.replayed_to_lsn) >= parse_lsn(last_write)
    assert "postgres" in result.databases_checked
    assert result.indexes_checked >= 2  # t_pkey and t_v, plus the catalogs' own
    series = {s.name: s for s in report.series()}
    assert series["pgtool_verify_base_replay_duration_seconds"].samples[0][1] > 0
    assert list(scratch.iterdir()) == []  # the throwaway cluster is gone


def test_base_drill_fails_clearly_when_a_segment_is_missing(
    primary: ArchivingPrimary, work_dir: Path
) -> None:
    _write_and_archive(primary, 3)
    backup = list_base_backups(primary.base_dir)[-1]
    segments = sorted(i.name for i in list_archive(primary.archive_dir) if i.kind == "segment")
    missing = next(s for s in segments if s > backup.stop_wal_file)
    (primary.archive_dir / missing).unlink()
    scratch = work_dir / "drills"
    scratch.mkdir()
    with pytest.raises(OperationError, match=f"segment {missing} is missing"):
        run_base_drill(
            primary.base_dir,
            primary.archive_dir,
            pg_bindir=None,
            amcheck=False,
            report=RunReport(),
            work_dir=scratch,
        )
    assert list(scratch.iterdir()) == []


def test_verify_base_cli_pushes_its_result(primary: ArchivingPrimary, pushgateway) -> None:
    from pgharness import run_pgtool

    _write_and_archive(primary, 2)
    args = [
        "verify",
        "--base",
        "--base-dir",
        str(primary.base_dir),
        "--archive-dir",
        str(primary.archive_dir),
    ]
    passed = run_pgtool(*args, "--pushgateway", pushgateway.url)
    assert passed.returncode == 0, passed.stderr
    assert pushgateway.samples("pgtool_last_run_success", job="pgtool-verify-base") == [1]
    assert (
        len(pushgateway.samples("pgtool_verify_base_replay_duration_seconds", job="pgtool-verify-base")) == 1
    )
    for name in (
        "pgtool_verified_recovery_point_timestamp_seconds",
        "pgtool_restore_duration_seconds",
        "pgtool_replay_bytes_per_second",
        "pgtool_predicted_rto_seconds",
    ):
        assert len(pushgateway.samples(name, job="pgtool-verify-base")) == 1, name
    assert "verified recovery point: commit at" in passed.stdout
    # status reads the drill's measurements back and predicts the RTO for now
    [point] = pushgateway.samples(
        "pgtool_verified_recovery_point_timestamp_seconds", job="pgtool-verify-base"
    )
    [restore] = pushgateway.samples("pgtool_restore_duration_seconds", job="pgtool-verify-base")
    [rate] = pushgateway.samples("pgtool_replay_bytes_per_second", job="pgtool-verify-base")
    status = run_pgtool(
        "status",
        "--dsn",
        primary.dsn(),
        "--base-dir",
        str(primary.base_dir),
        "--archive-dir",
        str(primary.archive_dir),
        "--pushgateway",
        pushgateway.url,
        "--k8s",
        "off",
        "--format",
        "json",
    )
    section = json.loads(status.stdout)["sections"]["recoverability"]
    assert abs(datetime.fromisoformat(section["verified_recovery_point"]).timestamp() - point) < 1e-6
    assert section["restore_seconds"] == restore and section["replay_bytes_per_second"] == rate
    assert section["predicted_rto_seconds"] == round(restore + section["wal_since_backup_bytes"] / rate, 1)

    stop = list_base_backups(primary.base_dir)[-1].stop_wal_file
    newest = next(i.name for i in list_archive(primary.archive_dir) if i.kind == "segment" and i.name > stop)
    (primary.archive_dir / newest).unlink()
    failed = run_pgtool(*args, "--pushgateway", pushgateway.url)
    assert failed.returncode == 1 and f"segment {newest} is missing" in failed.stderr
    assert pushgateway.samples("pgtool_last_run_success", job="pgtool-verify-base") == [0]


def _commit_record(primary: ArchivingPrimary, since: str, until: str, xid: str) -> tuple[str, datetime]:
    """The COMMIT record of `xid` as the primary itself decodes it (pg_walinspect), and that it is the
    last commit in since..until."""
    rows = primary.sql(
        "SELECT start_lsn::text, xid::text, description FROM pg_get_wal_records_info(%s::pg_lsn, %s::pg_lsn) "
        "WHERE resource_manager = 'Transaction' AND record_type LIKE 'COMMIT%%' ORDER BY start_lsn",
        (since, until),
    )
    assert rows and rows[-1][1] == xid, rows  # ours is the last commit before the switch
    match = re.search(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)([+-]\d\d)(:?\d\d)?", rows[-1][2])
    assert match is not None, rows[-1][2]
    offset = match.group(2) + ":" + (match.group(3) or "00").lstrip(":")
    return str(rows[-1][0]), datetime.fromisoformat(match.group(1) + offset)


def _switch_without_commit(primary: ArchivingPrimary) -> str:
    """pg_switch_wal() (no commit of its own), waiting until the segment is archived; its LSN."""
    switched = str(primary.sql("SELECT pg_switch_wal()::text")[0][0])
    name = primary.sql("SELECT pg_walfile_name(%s::pg_lsn)", (switched,))[0][0]
    retry(
        lambda: (primary.sql("SELECT last_archived_wal FROM pg_stat_archiver")[0][0] or "") >= name,
        timeout=60,
    )
    return switched


@pytest.mark.all_versions
@pytest.mark.parametrize("idle_segments", [0, 2], ids=["commit-in-last-segment", "idle-segments-after"])
def test_base_drill_verified_recovery_point_is_the_last_commit(
    primary: ArchivingPrimary, work_dir: Path, idle_segments: int
) -> None:
    # No background commit (autovacuum's ANALYZE) may land between ours and the switch.
    primary.sql("ALTER SYSTEM SET autovacuum = off")
    primary.sql("SELECT pg_reload_conf()")
    _write_and_archive(primary, 2)
    primary.sql("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
    before = primary.sql("SELECT pg_current_wal_insert_lsn()::text")[0][0]
    xid = primary.sql("INSERT INTO t VALUES (-1, 'last') RETURNING pg_current_xact_id()::text")[0][0]
    switched = _switch_without_commit(primary)
    for _ in range(idle_segments):  # WAL without a commit: the drill must look back to older segments
        primary.sql("SELECT pg_logical_emit_message(false, 'pgtool-test', 'idle')")
        switched = _switch_without_commit(primary)
    commit_lsn, commit_time = _commit_record(primary, before, switched, xid)

    report = RunReport()
    scratch = work_dir / "drills"
    scratch.mkdir()
    result = run_base_drill(
        primary.base_dir, primary.archive_dir, pg_bindir=None, amcheck=False, report=report, work_dir=scratch
    )
    assert result.recovery_point_lsn == commit_lsn
    assert result.recovery_point_time is not None
    assert datetime.fromisoformat(result.recovery_point_time) == commit_time
    assert result.restore_seconds > 0 and result.replay_seconds > 0
    start = parse_lsn(list_base_backups(primary.base_dir)[-1].start_lsn)
    assert result.replayed_bytes > parse_lsn(commit_lsn) - start
    series = {s.name: s.samples[0][1] for s in report.series()}
    assert series["pgtool_verified_recovery_point_timestamp_seconds"] == commit_time.timestamp()
    assert series["pgtool_replay_bytes_per_second"] == result.replayed_bytes / result.replay_seconds
    assert series["pgtool_restore_duration_seconds"] == result.restore_seconds
    assert series["pgtool_predicted_rto_seconds"] == result.replay_duration_seconds
    assert "verified recovery point: commit at" in result.summary()
