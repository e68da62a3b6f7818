"""basebackup --repo refuses what --dest refuses (another system's repository, a server behind a
failover), takes exactly one of --dest and --repo, and leaves no spool behind when stopped."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from physical_repo_support import RepoPrimary, start_repo_primary

from pgharness import pgtool_argv, run_pgtool
from pgtool.physical import repo_catalog
from pgtool.repo import wal_name as wal_object
from pgtool.wal.repo_archive import SYSTEM_ID_OBJECT


@pytest.fixture
def repo_primary(request, work_dir: Path, monkeypatch) -> RepoPrimary:
    primary = start_repo_primary("local", request, work_dir, monkeypatch)
    yield primary
    primary.cluster.cleanup()


def test_options_and_safety_checks(repo_primary: RepoPrimary, work_dir: Path) -> None:
    primary = repo_primary
    primary.switch_wal()
    both = primary.pgtool("basebackup", "--dest", str(work_dir / "d"))
    assert both.returncode == 2 and "exactly one of --dest DIR and --repo URL" in both.stderr
    neither = run_pgtool("basebackup", "--dsn", primary.dsn())
    assert neither.returncode == 2 and "exactly one of" in neither.stderr
    with_archive = primary.pgtool("basebackup", "--archive-dir", str(work_dir))
    assert with_archive.returncode == 2 and "--archive-dir goes with --dest" in with_archive.stderr
    no_spool = primary.pgtool("basebackup", "--spool-dir", str(work_dir / "nope"))
    assert no_spool.returncode == 2 and "spool directory" in no_spool.stderr

    repo = primary.repo()
    # A timeline forked from this server's at a point it has passed: a former primary (split brain).
    history = wal_object("00000002.history")
    repo.put_if_absent(history, b"1\t0/1000000\tno recovery target specified\n")
    behind = primary.pgtool("basebackup", "--spool-dir", str(primary.spool))
    assert behind.returncode == 1 and "looks like a former primary" in behind.stderr
    assert repo_catalog.list_base_backups(repo) == [] and list(primary.spool.iterdir()) == []
    repo.delete(history)

    # The repository's WAL belongs to another system: retention would delete its backups and WAL.
    repo.delete(SYSTEM_ID_OBJECT)
    repo.put_if_absent(SYSTEM_ID_OBJECT, b"42\n", compress=False)
    foreign = primary.pgtool("basebackup", "--spool-dir", str(primary.spool))
    assert foreign.returncode == 2 and "belongs to database system 42" in foreign.stderr
    assert repo_catalog.list_base_backups(repo) == []


def test_sigterm_removes_the_spool_and_publishes_nothing(repo_primary: RepoPrimary) -> None:
    primary = repo_primary
    primary.sql("CREATE TABLE big AS SELECT g, md5(g::text) AS m FROM generate_series(1, 1500000) g")
    primary.switch_wal()
    argv = [*pgtool_argv(), "basebackup", "--dsn", primary.dsn(), "--repo", primary.backend.url]
    # server-side compression cannot stream (test_physical_repo_stream.py stops a streamed one)
    argv += ["--spool-dir", str(primary.spool), "--compress", "server-lz4"]
    proc = subprocess.Popen(argv, env=primary.backend.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not any(p.is_dir() and any(p.iterdir()) for p in primary.spool.iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline, "no spool appeared"
        time.sleep(0.02)
    time.sleep(0.3)  # pg_basebackup is writing
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0, err
    assert list(primary.spool.iterdir()) == []
    assert repo_catalog.list_base_backups(primary.repo()) == []
