"""The base drill over a repository (`pgtool.physical.repo_drill`): the newest base backup is downloaded
verified, restored into a throwaway cluster whose restore_command reads the repository, replayed to the
end of the repository's WAL and checked; a tampered WAL object makes it fail loudly, naming the object.
The scratch directory is gone afterwards either way."""

from __future__ import annotations

from pathlib import Path

import pytest
from repo_pitr_support import RepoPrimary, flip_byte, repo_backend, rewrite_object, start_repo_primary

from pgtool.errors import FindingsError, OperationError
from pgtool.obs.metrics import RunReport
from pgtool.physical.repo_drill import run_repo_base_drill
from pgtool.repo import wal_name
from pgtool.wal.listing import parse_lsn


@pytest.fixture(params=["local", "s3", "azure"])
def repo_primary(request, pg_major, work_dir, monkeypatch):
    backend = repo_backend(request.param, request, work_dir)
    primary = start_repo_primary(pg_major, work_dir, backend, monkeypatch)
    yield primary
    primary.cleanup()


def _backup_and_write(primary: RepoPrimary, segments: int) -> tuple[str, list[str], str]:
    primary.sql("CREATE TABLE t (i int PRIMARY KEY, v text)")
    primary.sql("CREATE INDEX t_v ON t (v)")
    stamp = primary.basebackup_to_repo()
    names, last = [], ""
    for n in range(segments):
        primary.sql(
            "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(%s::int, %s::int) g",
            (n * 1000, n * 1000 + 999),
        )
        last = primary.sql("SELECT pg_current_wal_insert_lsn()::text")[0][0]
        names.append(primary.switch_wal())
    return stamp, names, str(last)


def _drill(primary: RepoPrimary, scratch: Path, report: RunReport | None = None):
    assert primary.backend is not None
    return run_repo_base_drill(
        primary.backend.url,
        None,
        pg_bindir=None,
        amcheck=True,
        report=report or RunReport(),
        work_dir=scratch,
    )


def test_base_drill_over_a_repository_passes(repo_primary: RepoPrimary, work_dir: Path) -> None:
    primary = repo_primary
    stamp, names, last_write = _backup_and_write(primary, 2)
    scratch = work_dir / "drills"
    scratch.mkdir()
    report = RunReport()
    result = _drill(primary, scratch, report)
    assert result.backup_id == stamp
    assert result.archive_last_segment == names[-1]
    assert result.replayed_to_lsn is not None and parse_lsn(result.replayed_to_lsn) >= parse_lsn(last_write)
    assert result.recovery_point_time is not None  # the inserts' commits, read from the repository
    assert result.indexes_checked >= 2
    series = {s.name: s for s in report.series()}
    assert series["pgtool_verify_base_replay_duration_seconds"].samples[0][1] > 0
    assert list(scratch.iterdir()) == []  # the download and the throwaway cluster are gone


def test_base_drill_fails_loudly_on_a_tampered_wal_object(repo_primary: RepoPrimary, work_dir: Path) -> None:
    primary = repo_primary
    _stamp, names, _ = _backup_and_write(primary, 3)
    tampered = names[1]  # replayed by the server's restore-wal --repo, not read by pgtool beforehand
    rewrite_object(primary.repo, wal_name(tampered), flip_byte)
    scratch = work_dir / "drills"
    scratch.mkdir()
    with pytest.raises(FindingsError, match="base drill of") as caught:
        _drill(primary, scratch)
    assert tampered in str(caught.value.message)
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize("repo_primary", ["s3"], indirect=True)
def test_base_drill_over_a_repository_without_backups(repo_primary: RepoPrimary, work_dir: Path) -> None:
    repo_primary.switch_wal()
    with pytest.raises(OperationError, match="no complete base backup in repository"):
        _drill(repo_primary, work_dir)
