"""pgtool recover --repo: point-in-time recovery from a repository that holds the only copy of the base
backup and the WAL (the primary's machine is gone), and its refusals on a gap or a damaged object."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from physical_support import adopt
from repo_pitr_support import (
    RepoPrimary,
    flip_byte,
    recover_from_repo,
    repo_backend,
    rewrite_object,
    start_repo_primary,
)

from pgharness import retry, rmtree
from pgtool.repo import wal_name


@pytest.fixture(params=["s3"])
def repo_primary(request, pg_major, work_dir, monkeypatch):
    backend = repo_backend(request.param, request, work_dir)
    primary = start_repo_primary(pg_major, work_dir, backend, monkeypatch)
    yield primary
    primary.cleanup()


@pytest.fixture(params=["local", "s3", "azure"])
def any_repo_primary(request, pg_major, work_dir, monkeypatch):
    backend = repo_backend(request.param, request, work_dir)
    primary = start_repo_primary(pg_major, work_dir, backend, monkeypatch)
    yield primary
    primary.cleanup()


def _now(primary: RepoPrimary) -> str:
    return primary.sql(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"
    )[0][0]


def _lose_the_machine(primary: RepoPrimary) -> None:
    """Stop the primary and delete its data directory and every local backup: only the store is left."""
    data_dir = primary.cluster.data_dir
    primary.cluster.stop()
    rmtree(data_dir)
    shutil.rmtree(primary.base_dir)
    assert not data_dir.exists()


def test_pitr_from_a_repository_after_losing_the_machine(
    any_repo_primary: RepoPrimary, work_dir: Path
) -> None:
    """On every backend: the base backup and the WAL exist only in the repository."""
    primary = any_repo_primary
    primary.sql("CREATE TABLE t (i int PRIMARY KEY)")
    primary.sql("INSERT INTO t SELECT generate_series(1, 10)")
    stamp = primary.basebackup_to_repo()
    primary.sql("INSERT INTO t SELECT generate_series(11, 20)")  # after the backup, before the target
    time.sleep(0.05)
    target = _now(primary)
    time.sleep(0.05)
    primary.sql("INSERT INTO t SELECT generate_series(21, 30)")  # after the target
    primary.switch_wal()
    backend = primary.backend
    assert backend is not None
    _lose_the_machine(primary)

    pgdata = work_dir / "restored" / "pitr"
    result = recover_from_repo(backend, pgdata, "--target-time", target)
    assert result.returncode == 0, result.stderr
    assert f"from base backup {stamp}" in result.stdout
    auto = (pgdata / "postgresql.auto.conf").read_text()
    assert f"restore-wal %f %p --repo {backend.url}" in auto
    for key, secret in backend.env.items():  # no credential in the copy's settings
        if key.startswith(("AWS_SECRET", "AWS_ACCESS", "AZURE_STORAGE_ACCOUNT_KEY")):
            assert secret not in auto
    assert "archive_mode = 'off'" in auto and "archive_command" not in auto
    # streamed, not downloaded: no scratch directory beside the recovered copy
    assert sorted(p.name for p in pgdata.parent.iterdir()) == ["pitr"]

    copy = adopt(primary.major, pgdata)  # the server inherits the AWS_* environment (monkeypatched)
    try:
        copy.start()
        copy.wait_until_ready(120, primary=True)
        with copy.connect(pin="off") as conn:
            rows = [r[0] for r in conn.execute("SELECT i FROM t ORDER BY i").fetchall()]
        assert rows == list(range(1, 21))
        # restore-wal prefetched from a remote store into pg_wal/.pgtool-prefetch (not from a local
        # repository: nothing to gain); recovery_end_command removed the spool when recovery ended
        assert "recovery_end_command = 'rm -rf pg_wal/.pgtool-prefetch'" in auto
        retry(lambda: not (pgdata / "pg_wal" / ".pgtool-prefetch").exists(), timeout=30)
        assert ('"prefetched"' in copy.log_file.read_text()) == (backend.kind != "local")
    finally:
        copy.cleanup()


def _backup_then_segments(primary: RepoPrimary, count: int) -> list[str]:
    primary.sql("CREATE TABLE t (i int PRIMARY KEY)")
    primary.basebackup_to_repo()
    names = []
    for i in range(count):
        primary.sql("INSERT INTO t VALUES (%s)", (i,))
        names.append(primary.switch_wal())
    return names


def test_recover_refuses_a_gap_in_the_repository(repo_primary: RepoPrimary, work_dir: Path) -> None:
    primary = repo_primary
    names = _backup_then_segments(primary, 4)
    repo = primary.repo
    missing = names[1]
    repo.delete(wal_name(missing))

    pgdata = work_dir / "gap"
    assert primary.backend is not None
    result = recover_from_repo(primary.backend, pgdata)
    assert result.returncode == 1, result.stderr
    assert "has a gap" in result.stderr and missing in result.stderr
    assert not pgdata.exists()
    assert list(work_dir.glob(".pgtool-base-download-*")) == []


def test_recover_refuses_a_damaged_last_segment(repo_primary: RepoPrimary, work_dir: Path) -> None:
    primary = repo_primary
    names = _backup_then_segments(primary, 2)
    repo = primary.repo
    rewrite_object(repo, wal_name(names[-1]), flip_byte)  # pg_waldump would read it: verified first

    pgdata = work_dir / "damaged"
    assert primary.backend is not None
    result = recover_from_repo(primary.backend, pgdata)
    assert result.returncode == 1, result.stderr
    assert "cannot read the archive's last segment" in result.stderr
    assert names[-1] in result.stderr
    assert not pgdata.exists()


def test_repo_and_directories_are_exclusive(work_dir: Path) -> None:
    from pgharness import run_pgtool

    result = run_pgtool(
        "recover",
        "--repo",
        str(work_dir / "repo"),
        "--base-dir",
        str(work_dir / "base"),
        "--archive-dir",
        str(work_dir / "archive"),
        "--pgdata",
        str(work_dir / "x"),
    )
    assert result.returncode == 2, result.stderr
    assert "not both" in result.stderr
