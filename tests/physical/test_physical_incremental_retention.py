"""Chain-aware retention and the recovery window; a chain in a repository; a backup of a standby."""

from __future__ import annotations

import shlex
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from incremental_support import recovered_rows, server_now, start_summarizing_primary
from physical_support import ArchivingPrimary, adopt, recover
from repo_pitr_support import RepoPrimary, recover_from_repo, repo_backend

from pgharness import pgtool_argv, retry, run_pgtool, start_cluster
from pgtool.physical import repo_catalog
from pgtool.physical.base_catalog import BaseBackupInfo, list_base_backups
from pgtool.physical.base_retention import parse_window, plan_retention


def _info(stamp: str, stop: datetime, parent: BaseBackupInfo | None = None) -> BaseBackupInfo:
    n = int(stamp[-3:-1])
    return BaseBackupInfo(
        id=stamp,
        start_time=stop.isoformat(),
        stop_time=stop.isoformat(),
        start_lsn=f"0/{n:X}000028",
        stop_lsn=f"0/{n:X}000100",
        start_wal_file=f"0000000100000000000000{n:02X}",
        stop_wal_file=f"0000000100000000000000{n:02X}",
        timeline=1,
        system_identifier="1",
        server_version="18.1",
        server_version_num=180001,
        wal_segment_size=16 * 2**20,
        compression="none",
        wal_method="stream",
        size_bytes=1,
        parent=parent.id if parent else None,
        chain=[*parent.chain, parent.id] if parent else [],
    )


def test_retention_keeps_whole_chains_and_the_window() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    day = timedelta(days=1)
    f1 = _info("20261101T000010Z", now - 30 * day)
    i11 = _info("20261101T000011Z", now - 29 * day, f1)
    f2 = _info("20261101T000020Z", now - 20 * day)
    i21 = _info("20261101T000021Z", now - 16 * day, f2)
    i22 = _info("20261101T000022Z", now - 10 * day, i21)
    i23 = _info("20261101T000023Z", now - 1 * day, i22)
    backups = [f1, i11, f2, i21, i22, i23]
    # --keep 1: the newest incremental keeps its whole chain; the older chain goes.
    plan = plan_retention(backups, 1)
    assert [b.id for b in plan.kept] == [f2.id, i21.id, i22.id, i23.id]
    assert [b.id for b in plan.doomed] == [f1.id, i11.id]
    assert "no kept incremental needs it" in plan.reasons[f1.id]
    # A 14-day window begins after i21 finished: i21 (and its chain) is the window's anchor.
    plan = plan_retention(backups, 1, parse_window("14d"), now)
    assert [b.id for b in plan.doomed] == [f1.id, i11.id]
    assert plan.boundary is not None and plan.boundary.id == i21.id
    assert "14d window" in plan.reasons[f1.id] and i21.id in plan.wal_reason
    # A 25-day window reaches back into the first chain: i11 anchors it, so nothing goes.
    assert plan_retention(backups, 1, parse_window("25d"), now).doomed == []
    with pytest.raises(Exception, match="not a duration"):
        parse_window("two weeks")


@pytest.fixture
def primary18(work_dir: Path):
    primary = start_summarizing_primary(work_dir)
    yield primary
    primary.cleanup()


def _insert(primary: ArchivingPrimary, first: int, last: int) -> list[int]:
    primary.sql("INSERT INTO t SELECT generate_series(%s::int, %s::int)", (first, last))
    return list(range(first, last + 1))


def test_window_retention_keeps_the_window_oldest_point_recoverable(
    primary18: ArchivingPrimary, work_dir: Path
) -> None:
    primary = primary18
    primary.sql("CREATE TABLE t (i int PRIMARY KEY)")
    primary.basebackup()  # F0: only --keep and the window can save it; they do not
    primary.basebackup()  # F: the chain of the window's anchor needs it
    rows = _insert(primary, 1, 10)
    primary.basebackup("--incremental")  # I1: the newest backup before the window begins
    rows += _insert(primary, 11, 20)
    time.sleep(12)
    primary.basebackup()  # F2: inside the window
    _insert(primary, 21, 30)
    primary.switch_wal()
    f0, f, i1, f2 = list_base_backups(primary.base_dir)
    assert i1.parent == f.id

    seconds = int((datetime.now(UTC) - i1.stop_datetime).total_seconds()) - 3
    window = ["--keep", "1", "--retention-window", f"{seconds}s", "--archive-dir", str(primary.archive_dir)]
    dry = primary.basebackup("--dry-run", *window)
    assert f"would delete {f0.id}: " in dry.stdout, dry.stdout
    assert f"would delete {f.id}" not in dry.stdout and "would prune" in dry.stdout
    assert len(list_base_backups(primary.base_dir)) == 4  # a dry run deletes nothing

    primary.basebackup("--incremental", *window)
    after = datetime.now(UTC)
    kept = [b.id for b in list_base_backups(primary.base_dir)]
    assert kept[:3] == [f.id, i1.id, f2.id] and len(kept) == 4
    archived = sorted(p.name[:24] for p in primary.archive_dir.iterdir() if len(p.name) >= 24)
    assert archived and min(n[8:] for n in archived if not n.endswith("history")) >= i1.start_wal_file[8:]

    oldest = (after - timedelta(seconds=seconds)).isoformat()
    pgdata = work_dir / "window-start"
    result = recover(primary, pgdata, "--target-time", oldest)
    assert result.returncode == 0, result.stderr
    assert f"from base backup {i1.id}" in result.stdout
    assert recovered_rows(primary.major, pgdata) == rows


@pytest.fixture
def repo_primary18(request, work_dir: Path, monkeypatch):
    backend = repo_backend("local", request, work_dir)
    for key, value in backend.env.items():
        if key.startswith(("AWS_", "AZURE_")):
            monkeypatch.setenv(key, value)
    exe = shlex.quote(pgtool_argv()[0])
    command = f"{exe} archive-wal %p %f --repo {shlex.quote(backend.url)}"
    settings = {"archive_mode": "on", "archive_command": command, "wal_level": "replica"}
    cluster = start_cluster(18, settings={**settings, "summarize_wal": "on"})
    primary = RepoPrimary(cluster, work_dir / "none", work_dir / "base", work_dir, backend)
    yield primary
    primary.cleanup()


def test_an_incremental_chain_in_a_repository_recovers_and_drills(
    repo_primary18: RepoPrimary, work_dir: Path
) -> None:
    primary = repo_primary18
    backend = primary.backend
    assert backend is not None
    spool = work_dir / "spool"
    spool.mkdir()

    def basebackup(*args: str) -> str:
        argv = ["basebackup", "--dsn", primary.dsn(), "--repo", backend.url, "--spool-dir", str(spool)]
        result = run_pgtool(*argv, *args, env=backend.env)
        assert result.returncode == 0, result.stderr
        return result.stdout

    primary.sql("CREATE TABLE t (i int PRIMARY KEY)")
    rows = _insert(primary, 1, 10)
    basebackup()
    rows += _insert(primary, 11, 20)
    assert "incremental on" in basebackup("--incremental")
    rows += _insert(primary, 21, 30)
    assert "incremental on" in basebackup("--incremental")
    target = server_now(primary)
    _insert(primary, 31, 40)
    primary.switch_wal()
    backups = repo_catalog.list_base_backups(primary.repo)
    assert backups[2].chain == [backups[0].id, backups[1].id]

    drill = run_pgtool("verify", "--base", "--repo", backend.url, env=backend.env)
    assert drill.returncode == 0, drill.stderr
    pgdata = work_dir / "from-repo"
    result = recover_from_repo(backend, pgdata, "--target-time", target)
    assert result.returncode == 0, result.stderr
    assert f"from base backup {backups[2].id}" in result.stdout
    assert recovered_rows(18, pgdata) == rows
    assert not [
        p for p in work_dir.iterdir() if p.name.startswith((".pgtool-base-download", ".pgtool-combine"))
    ]


def test_a_base_backup_of_a_streaming_standby_recovers_with_wal_from_the_archive(
    primary: ArchivingPrimary, work_dir: Path
) -> None:
    primary.sql("CREATE TABLE t (i int PRIMARY KEY)")
    rows = _insert(primary, 1, 10)
    primary.basebackup()
    standby_data = work_dir / "standby"
    made = recover(primary, standby_data, "--standby", "--primary-conninfo", primary.dsn())
    assert made.returncode == 0, made.stderr
    standby = adopt(primary.major, standby_data)
    try:
        standby.start()
        standby.wait_until_ready(120)
        rows += _insert(primary, 11, 20)

        def caught_up() -> bool:
            with standby.connect(pin="off") as conn:
                return conn.execute("SELECT count(*) FROM t").fetchone()[0] == len(rows)

        retry(caught_up, timeout=60)
        standby_base = work_dir / "standby-base"
        taken = run_pgtool("basebackup", "--dsn", standby.dsn(), "--dest", str(standby_base))
        assert taken.returncode == 0, taken.stderr
    finally:
        standby.cleanup()
    rows += _insert(primary, 21, 30)  # after the standby's backup: only the primary's archive has it
    target = server_now(primary)
    _insert(primary, 31, 40)
    primary.switch_wal()

    [backup] = list_base_backups(standby_base)
    pgdata = work_dir / "from-standby-backup"
    result = run_pgtool(
        "recover",
        "--base-dir",
        str(standby_base),
        "--archive-dir",
        str(primary.archive_dir),
        "--pgdata",
        str(pgdata),
        "--target-time",
        target,
    )
    assert result.returncode == 0, result.stderr
    assert f"from base backup {backup.id}" in result.stdout
    assert recovered_rows(primary.major, pgdata) == rows
