"""Issue 14's archive findings on real clusters: recovery to an explicit end, an empty archive, a drill
server dying mid-replay, and a stale primary after a failover (split brain)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from physical_support import ArchivingPrimary, adopt, archive_command, recover

from pgharness import retry, run_pgtool
from pgtool.errors import FindingsError
from pgtool.obs.metrics import RunReport
from pgtool.physical.base_catalog import list_base_backups
from pgtool.physical.base_drill import run_base_drill
from pgtool.wal.listing import list_archive


def _rows(cluster) -> list[int]:
    with cluster.connect(pin="off") as conn:
        return [r[0] for r in conn.execute("SELECT i FROM t ORDER BY i").fetchall()]


def _backup_then_segments(primary: ArchivingPrimary, segments: int) -> list[str]:
    """A base backup, then `segments` archived segments each holding new rows; their names."""
    primary.sql("CREATE TABLE t (i int PRIMARY KEY)")
    primary.sql("INSERT INTO t SELECT generate_series(1, 10)")
    primary.basebackup()
    names = []
    for n in range(segments):
        first = 100 * (n + 1)
        primary.sql("INSERT INTO t SELECT generate_series(%s::int, %s::int)", (first, first + 9))
        names.append(primary.switch_wal())
    return names


def _drop(archive_dir: Path, segment: str) -> None:
    for path in archive_dir.glob(f"{segment}*"):
        path.unlink()


def test_recover_without_a_target_refuses_to_promote_before_the_archive_end(
    primary: ArchivingPrimary, work_dir: Path
) -> None:
    names = _backup_then_segments(primary, 3)
    pgdata = work_dir / "pitr"
    result = recover(primary, pgdata)
    assert result.returncode == 0, result.stderr
    assert "the last complete record archived" in result.stdout
    auto = (pgdata / "postgresql.auto.conf").read_text()
    assert "recovery_target_lsn = " in auto and "recovery_target_inclusive = 'on'" in auto

    # A segment goes missing after recover checked the archive (say the mount went away): replay must
    # stop with an error rather than end at the gap and promote with rows missing.
    _drop(primary.archive_dir, names[1])
    copy = adopt(primary.major, pgdata)
    try:
        with contextlib.suppress(Exception):  # pg_ctl may see the server die during its start
            copy.start(timeout=60)
        retry(
            lambda: (
                "recovery ended before configured recovery target was reached"
                in copy.log_file.read_text(errors="replace")
            ),
            timeout=60,
        )
        assert (pgdata / "recovery.signal").exists()  # never promoted
    finally:
        copy.cleanup()


def test_recover_refuses_an_empty_archive(primary: ArchivingPrimary, work_dir: Path) -> None:
    _backup_then_segments(primary, 1)
    empty = work_dir / "unmounted"
    empty.mkdir()
    result = run_pgtool(
        "recover", "--base-dir", str(primary.base_dir), "--archive-dir", str(empty),
        "--pgdata", str(work_dir / "pitr"),
    )  # fmt: skip
    assert result.returncode != 0
    assert "holds no WAL segment" in result.stderr
    assert not (work_dir / "pitr").exists()


def test_base_drill_fails_at_once_with_the_fatal_line_when_the_server_dies(
    primary: ArchivingPrimary, work_dir: Path
) -> None:
    names = _backup_then_segments(primary, 3)
    damaged = primary.archive_dir / names[1]
    damaged.chmod(0o644)
    damaged.write_bytes(damaged.read_bytes()[: 1024 * 1024])  # truncated, its record unchanged
    scratch = work_dir / "drills"
    scratch.mkdir()
    with pytest.raises(FindingsError, match=r"stopped during WAL replay: FATAL: .*could not restore file"):
        run_base_drill(
            primary.base_dir,
            primary.archive_dir,
            pg_bindir=None,
            amcheck=False,
            report=RunReport(),
            work_dir=scratch,
        )
    assert list(scratch.iterdir()) == []


def test_a_stale_primary_after_failover_neither_archives_nor_prunes(
    primary: ArchivingPrimary, work_dir: Path
) -> None:
    primary.sql("CREATE TABLE t (i int PRIMARY KEY)")
    primary.sql("INSERT INTO t SELECT generate_series(1, 10)")
    primary.basebackup()
    primary.switch_wal()

    # Failover: a standby is promoted while the old primary keeps running (it comes back, or never died).
    conninfo = f"host=127.0.0.1 port={primary.cluster.port} user=postgres"
    assert recover(primary, work_dir / "standby", "--standby", "--primary-conninfo", conninfo).returncode == 0
    promoted = adopt(primary.major, work_dir / "standby")
    promoted.settings.update({"archive_mode": "on", "archive_command": archive_command(primary.archive_dir)})
    try:
        promoted.start()
        retry(lambda: _rows(promoted) == list(range(1, 11)), timeout=60)
        with promoted.connect(pin="off") as conn:
            conn.execute("SELECT pg_promote()")
        promoted.wait_until_ready(60, primary=True)
        with promoted.connect(pin="off") as conn:
            conn.execute("INSERT INTO t SELECT generate_series(11, 20)")
            tl2 = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]
        retry(lambda: any(i.segment == tl2 for i in list_archive(primary.archive_dir)), timeout=60)
        new = run_pgtool(
            "basebackup", "--dsn", str(promoted.dsn("postgres")), "--dest", str(primary.base_dir),
            "--archive-dir", str(primary.archive_dir),
        )  # fmt: skip
        assert new.returncode == 0, new.stderr
        backups_before = [b.id for b in list_base_backups(primary.base_dir)]
        assert [b.timeline for b in list_base_backups(primary.base_dir)] == [1, 2]

        # The old primary keeps writing timeline 1: archive-wal refuses what lies past the segment of
        # the fork (that segment itself may still be archived late).
        for first in (1000, 2000):
            primary.sql("INSERT INTO t SELECT generate_series(%s::int, %s::int + 10)", (first, first))
            primary.sql("SELECT pg_switch_wal()")
        retry(lambda: primary.sql("SELECT failed_count FROM pg_stat_archiver")[0][0] > 0, timeout=60)
        failed = primary.sql("SELECT last_failed_wal FROM pg_stat_archiver")[0][0]
        assert failed.startswith("00000001") and not (primary.archive_dir / failed).exists()

        # Its base backup with retention would have deleted timeline 2's WAL and backups: refused.
        tl2_before = sorted(p.name for p in primary.archive_dir.iterdir() if p.name.startswith("00000002"))
        stale = run_pgtool(
            "basebackup", "--dsn", primary.dsn(), "--dest", str(primary.base_dir), "--keep", "1",
            "--archive-dir", str(primary.archive_dir),
        )  # fmt: skip
        assert stale.returncode != 0
        error = json.loads(stale.stderr.strip().splitlines()[-1])["error"]
        assert "split brain" in error and "timeline 1" in error
        assert [b.id for b in list_base_backups(primary.base_dir)] == backups_before
        tl2_after = sorted(p.name for p in primary.archive_dir.iterdir() if p.name.startswith("00000002"))
        assert tl2_after == tl2_before and tl2 in tl2_after
    finally:
        promoted.cleanup()


def test_status_claims_a_window_only_over_wal_it_read_and_verified(primary: ArchivingPrimary) -> None:
    from pgtool.status.model import Thresholds
    from pgtool.status.wal_window import base_backups_section

    between = _backup_then_segments(primary, 2)  # base backup 1, then two segments
    primary.basebackup()  # base backup 2
    primary.sql("INSERT INTO t SELECT generate_series(5000, 5010)")
    primary.switch_wal()
    first, second = list_base_backups(primary.base_dir)

    healthy = base_backups_section(primary.base_dir, primary.archive_dir, Thresholds())
    assert healthy.data["window"]["from_backup"] == first.id
    assert healthy.data["verified"]["segments"] >= 3
    assert any("read and verified" in line for line in healthy.lines)

    # A flipped bit in WAL between the two backups: only the second backup's window can be claimed.
    damaged = primary.archive_dir / between[0]
    data = bytearray(damaged.read_bytes())
    data[len(data) // 3] ^= 0x10
    damaged.chmod(0o644)
    damaged.write_bytes(bytes(data))
    section = base_backups_section(primary.base_dir, primary.archive_dir, Thresholds())
    assert section.data["damaged_segments"] == [between[0]]
    assert section.data["window"]["from_backup"] == second.id
    assert any(between[0] in p.message and "failed verification" in p.message for p in section.problems)


def _server_now(primary: ArchivingPrimary) -> str:
    return primary.sql(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"
    )[0][0]


def test_a_time_target_before_a_gap_recovers_and_one_after_it_is_refused_clearly(
    primary: ArchivingPrimary, work_dir: Path
) -> None:
    primary.sql("CREATE TABLE t (i int PRIMARY KEY)")
    primary.sql("INSERT INTO t SELECT generate_series(1, 10)")
    primary.basebackup()
    primary.sql("INSERT INTO t SELECT generate_series(11, 20)")
    before_gap = _server_now(primary)
    primary.sql("INSERT INTO t SELECT generate_series(21, 25)")  # same segment, after the target
    primary.switch_wal()
    primary.sql("INSERT INTO t SELECT generate_series(26, 30)")
    lost = primary.switch_wal()
    primary.sql("INSERT INTO t SELECT generate_series(31, 35)")
    primary.switch_wal()
    after_gap = _server_now(primary)
    _drop(primary.archive_dir, lost)

    pgdata = work_dir / "pitr"
    result = recover(primary, pgdata, "--target-time", before_gap)
    assert result.returncode == 0, result.stderr
    assert f"gap at {lost}" in result.stdout
    copy = adopt(primary.major, pgdata)
    try:
        copy.start()
        copy.wait_until_ready(120, primary=True)
        assert _rows(copy) == list(range(1, 21))
    finally:
        copy.cleanup()

    refused = recover(primary, work_dir / "pitr2", "--target-time", after_gap)
    assert refused.returncode != 0
    error = json.loads(refused.stderr.strip().splitlines()[-1])["error"]
    assert f"lies after a gap in WAL archive {primary.archive_dir}: segment {lost} is missing" in error
    assert "recover to a time before" in error


def test_retention_never_deletes_backups_or_wal_of_a_newer_timeline(tmp_path: Path) -> None:
    from physical_support import fake_backup

    from pgtool.physical.base_retention import apply_retention
    from pgtool.wal.names import segment_name

    base, archive = tmp_path / "base", tmp_path / "wal"
    archive.mkdir()
    fake_backup(base, "20260101T000000Z", 2, 6)  # after the failover, on timeline 2
    fake_backup(base, "20260102T000000Z", 1, 9)  # later, from the stale primary still on timeline 1
    names = [segment_name(1, n) for n in range(5, 10)] + [segment_name(2, n) for n in (6, 7)]
    for name in [*names, "00000002.history"]:
        (archive / name).write_bytes(b"")
    outcome = apply_retention(base, keep=1, archive_dir=archive)
    assert outcome.deleted == []
    assert [b.id for b in list_base_backups(base)] == ["20260101T000000Z", "20260102T000000Z"]
    assert all((archive / segment_name(2, n)).exists() for n in (6, 7))
