"""basebackup --repo claims its stamp before it writes under it (repo_basebackup._new_stamp,
repo_catalog.claim), on every backend (local directory, moto's S3, Azurite): runs starting in the same
second get distinct stamps, a stamp another run claimed is passed over, the claim is never taken for
a backup, and a whole run (or one stopped) leaves no claim behind."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from physical_repo_support import RepoPrimary, start_repo_primary
from repo_stream_support import fill, start_pgtool, start_streaming, terminate, written_bytes

from basebackup_fakes import fake_base_backup
from pgharness import retry
from pgtool.physical import repo_basebackup, repo_catalog
from pgtool.physical.base_catalog import STAMP_FORMAT
from pgtool.repo import Repository, base_prefix

CLAIM = repo_catalog.CLAIM_FILE


def _claims(repo: Repository) -> list[str]:
    """The stamps holding a claim object."""
    return sorted(o.name.split("/")[1] for o in repo.list("base/") if o.name.endswith("/" + CLAIM))


def _next_second() -> None:
    time.sleep(1.001 - time.time() % 1)


def test_claims_in_one_second_get_distinct_stamps(backend) -> None:
    repo = backend.open()
    # Back to back in one thread: each call finds the previous one's claim and moves on.
    _next_second()
    started = datetime.now(UTC).strftime(STAMP_FORMAT)
    serial = [repo_basebackup._new_stamp(repo) for _ in range(3)]
    assert len(set(serial)) == 3 and serial == sorted(serial)
    assert serial[0] == started  # the first had the second to itself

    # Four "runs" released together just after a second began: all race for the same stamp.
    _next_second()
    barrier = threading.Barrier(4)
    got: list[str] = []
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            got.append(repo_basebackup._new_stamp(repo))
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    raced = datetime.now(UTC).strftime(STAMP_FORMAT)
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == [] and len(got) == 4
    assert len(set(got)) == 4, got  # never one stamp for two runs
    assert min(got) == raced  # one of them won the contested second
    assert _claims(repo) == sorted(serial + got)
    for stamp in serial + got:  # each prefix holds only its run's claim, with its own token
        assert [o.name for o in repo.list(base_prefix(stamp))] == [base_prefix(stamp) + CLAIM]
    tokens = {json.loads(repo.read_bytes(base_prefix(s) + CLAIM))["token"] for s in serial + got}
    assert len(tokens) == 7
    # Claims are no backups, and no incomplete backups either (every run shows one while it runs).
    assert repo_catalog.list_base_backups(repo) == []
    assert repo_catalog.unlisted(repo) == []


def test_a_stamp_claimed_by_another_run_is_not_used(backend) -> None:
    repo = backend.open()
    _next_second()
    now = datetime.now(UTC)
    taken = [(now + timedelta(seconds=i)).strftime(STAMP_FORMAT) for i in range(3)]
    theirs = b'{"host": "elsewhere", "pid": 1, "token": "another run"}'
    for stamp in taken[:2]:  # two runs own these seconds
        repo.put_if_absent(base_prefix(stamp) + CLAIM, theirs)
    # the third second holds a finished backup's object, its claim already released
    finished = base_prefix(taken[2]) + "backup_manifest"
    repo.put_if_absent(finished, b"{}")

    stamp = repo_basebackup._new_stamp(repo)
    assert stamp not in taken and stamp > taken[-1]
    for other in taken[:2]:  # the other runs' claims are untouched
        assert repo.read_bytes(base_prefix(other) + CLAIM) == theirs
    # the claim briefly taken on the used stamp went again; the backup's object stayed
    assert [o.name for o in repo.list(base_prefix(taken[2]))] == [finished]
    assert _claims(repo) == sorted([*taken[:2], stamp])


def test_readers_ignore_a_claim_left_beside_a_backup(backend, tmp_path: Path) -> None:
    """A run killed right after its record keeps its claim in the backup's prefix: listed once, read
    back without it, deleted with it."""
    repo = backend.open()
    stamp = "20260101T000000Z"
    info = fake_base_backup(tmp_path / "local", stamp, 1, 3)
    repo_catalog.upload(repo, tmp_path / "local" / stamp, stamp)
    repo.put_if_absent(base_prefix(stamp) + CLAIM, b'{"token": "killed after its record"}')
    [listed] = repo_catalog.list_base_backups(repo)
    assert listed.id == info.id
    assert CLAIM not in repo_catalog.objects(repo, listed)
    local = repo_catalog.download(repo, listed, tmp_path / "fetched")
    assert sorted(p.name for p in local.iterdir()) == ["backup_manifest", "pgtool-basebackup.json"]
    assert repo_catalog.unlisted(repo) == []
    assert not repo_catalog.claim(repo, stamp)  # a later run never takes it
    repo_catalog.delete(repo, stamp)
    assert repo.list("base/") == []


@pytest.fixture(params=["local", "s3", "azure"])
def repo_primary(request, work_dir: Path, monkeypatch) -> RepoPrimary:
    primary = start_repo_primary(request.param, request, work_dir, monkeypatch)
    yield primary
    primary.cluster.cleanup()


def test_overlapping_runs_each_store_one_backup_and_no_claim(repo_primary: RepoPrimary) -> None:
    primary = repo_primary
    fill(primary.sql, 1, 60000)
    primary.switch_wal()
    repo = primary.repo()
    spool = ("--spool-dir", str(primary.spool))

    # Stopped mid-stream (SIGTERM): nothing of its stamp is left, the claim included.
    proc, pid = start_streaming(primary, *spool)
    assert _claims(repo) != []  # claimed before pg_basebackup ran
    retry(lambda: written_bytes(pid) >= 4 << 20, timeout=120, interval=0.01)
    terminate(proc)
    assert repo.list("base/") == []

    # One whole run: one backup listed, its prefix without a claim.
    primary.basebackup()
    [first] = repo_catalog.list_base_backups(repo)
    assert _claims(repo) == [] and repo_catalog.unlisted(repo) == []

    # Two runs started together (a CronJob and an operator's run): two backups, two stamps.
    _next_second()
    args = ("--dsn", primary.dsn(), "--repo", primary.backend.url, *spool)
    procs = [start_pgtool("basebackup", *args, env=primary.backend.env) for _ in range(2)]
    for p in procs:
        _, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr
    backups = repo_catalog.list_base_backups(repo)
    assert len(backups) == 3 and backups[0].id == first.id
    assert len({b.id for b in backups}) == 3
    assert _claims(repo) == [] and repo_catalog.unlisted(repo) == []
    for b in backups[1:]:  # each prefix holds exactly its own backup's objects
        names = {o.name.removeprefix(base_prefix(b.id)) for o in repo.list(base_prefix(b.id))}
        assert names == set(b.files) | {"pgtool-basebackup.json"}
    primary.switch_wal()  # the WAL after the backups archived
    data, problems = primary.status()
    assert [b["id"] for b in data["backups"]] == [b.id for b in backups]
    # pruning keeps WAL from the second-newest backup on: only the oldest may lack WAL after it
    assert all(first.id in p for p in problems), problems
