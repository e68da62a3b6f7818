"""basebackup --incremental (PostgreSQL 18): a chain that restores exactly, damage refused, PG15 refused."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from incremental_support import recovered_rows, server_now, start_summarizing_primary
from physical_support import ArchivingPrimary, recover

from pgharness import run_pgtool
from pgtool.physical.base_catalog import list_base_backups


@pytest.fixture
def primary18(work_dir: Path) -> Iterator[ArchivingPrimary]:
    primary = start_summarizing_primary(work_dir)
    yield primary
    primary.cleanup()


def _batch(primary: ArchivingPrimary, first: int) -> list[int]:
    rows = list(range(first, first + 10))
    primary.sql("INSERT INTO t SELECT generate_series(%s::int, %s::int)", (rows[0], rows[-1]))
    return rows


def test_a_chain_of_three_incrementals_recovers_each_point_exactly(
    primary18: ArchivingPrimary, work_dir: Path
) -> None:
    primary = primary18
    primary.sql("CREATE TABLE t (i int PRIMARY KEY)")
    primary.sql("CREATE TABLE big AS SELECT g AS i, repeat('x', 200) AS pad FROM generate_series(1, 20000) g")
    committed = _batch(primary, 1)
    full = primary.basebackup()
    assert "(full)" in full.stdout
    targets = []
    for k in range(1, 4):
        committed += _batch(primary, k * 100)
        out = primary.basebackup("--incremental")
        assert "incremental on" in out.stdout, out.stdout
        committed += _batch(primary, k * 100 + 50)  # after the backup, before the target
        targets.append((server_now(primary), list(committed)))
    _batch(primary, 1000)  # after every target
    primary.switch_wal()

    backups = list_base_backups(primary.base_dir)
    assert [b.parent for b in backups] == [None, backups[0].id, backups[1].id, backups[2].id]
    assert backups[3].chain == [b.id for b in backups[:3]]
    assert all(b.size_bytes < backups[0].size_bytes / 2 for b in backups[1:])
    recorded = json.loads((backups[3].path / "pgtool-basebackup.json").read_text())
    assert recorded["parent"] == backups[2].id

    for k, (target, expected) in enumerate(targets, start=1):
        pgdata = work_dir / f"pitr-{k}"
        result = recover(primary, pgdata, "--target-time", target)
        assert result.returncode == 0, result.stderr
        assert f"from base backup {backups[k].id}" in result.stdout
        assert recovered_rows(primary.major, pgdata) == expected


def test_a_missing_or_damaged_member_is_refused_before_any_replay(
    primary18: ArchivingPrimary, work_dir: Path
) -> None:
    primary = primary18
    primary.sql("CREATE TABLE t (i int PRIMARY KEY)")
    _batch(primary, 1)
    primary.basebackup()
    for k in (1, 2):
        _batch(primary, k * 100)
        primary.basebackup("--incremental")
    primary.switch_wal()
    full, middle, _newest = list_base_backups(primary.base_dir)

    # Damage the full backup: one byte of its base tar.
    tar = full.path / "base.tar"
    data = bytearray(tar.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tar.write_bytes(bytes(data))
    pgdata = work_dir / "damaged"
    result = recover(primary, pgdata)
    assert result.returncode == 1
    assert f"base backup {full.id} of the chain" in result.stderr, result.stderr
    assert not pgdata.exists() or not any(pgdata.iterdir())  # nothing left to start
    drill = run_pgtool(
        "verify", "--base", "--base-dir", str(primary.base_dir), "--archive-dir", str(primary.archive_dir)
    )
    assert drill.returncode == 1 and f"base backup {full.id} of the chain" in drill.stderr, drill.stderr

    # Delete the middle member: refused from the catalogue, before anything is unpacked.
    shutil.rmtree(middle.path)
    pgdata = work_dir / "broken"
    result = recover(primary, pgdata)
    assert result.returncode == 1
    assert f"needs {middle.id}, which is missing" in result.stderr, result.stderr
    assert not pgdata.exists()
    drill = run_pgtool(
        "verify", "--base", "--base-dir", str(primary.base_dir), "--archive-dir", str(primary.archive_dir)
    )
    assert drill.returncode == 1 and f"needs {middle.id}, which is missing" in drill.stderr, drill.stderr


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "error" in line.lower()]


def test_incremental_on_postgresql_15_exits_2_or_falls_back_to_full(primary: ArchivingPrimary) -> None:
    assert primary.major == 15
    refused = run_pgtool(
        "basebackup", "--dsn", primary.dsn(), "--dest", str(primary.base_dir), "--incremental"
    )
    assert refused.returncode == 2
    assert "PostgreSQL 15" in refused.stderr and "17 or newer" in refused.stderr
    assert len(_error_lines(refused.stderr)) == 1, refused.stderr
    assert list_base_backups(primary.base_dir) == []

    full = primary.basebackup("--incremental", "--incremental-fallback", "full")
    assert "(full)" in full.stdout
    [backup] = list_base_backups(primary.base_dir)
    assert backup.parent is None and backup.chain == []


@pytest.mark.pg_version(18)
def test_incremental_without_summarize_wal_exits_2(cluster, work_dir: Path) -> None:
    refused = run_pgtool("basebackup", "--dsn", cluster.dsn(), "--dest", str(work_dir / "b"), "--incremental")
    assert refused.returncode == 2, refused.stderr
    assert "summarize_wal is off" in refused.stderr
    assert len(_error_lines(refused.stderr)) == 1, refused.stderr
    assert list_base_backups(work_dir / "b") == []
