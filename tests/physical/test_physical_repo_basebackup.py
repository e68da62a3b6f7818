"""pgtool basebackup --repo, retention and status --repo against a real primary archiving into the same
repository, on every backend (local directory, moto's S3, Azurite)."""

from __future__ import annotations

from pathlib import Path

import pytest
from physical_repo_support import RepoPrimary, start_repo_primary

from pgtool.pg.binaries import for_server
from pgtool.physical import base_verify, repo_catalog
from pgtool.repo import IntegrityError, base_prefix
from pgtool.repo import wal_name as wal_object
from pgtool.wal.names import parse_wal_name, segment_name
from pgtool.wal.repo_archive import RepoWal


@pytest.fixture(params=["local", "s3", "azure"])
def repo_primary(request, work_dir: Path, monkeypatch) -> RepoPrimary:
    primary = start_repo_primary(request.param, request, work_dir, monkeypatch)
    yield primary
    primary.cluster.cleanup()


def _segments(primary: RepoPrimary) -> list[str]:
    return [f.name for f in RepoWal(primary.repo()).list_archive() if f.wal.kind == "segment"]


def _flip(repo, name: str) -> None:
    """Damage one stored byte of `name` behind pgtool's back."""
    stored = bytearray(b"".join(repo.store.get_stream(name)))
    stored[len(stored) // 2] ^= 1
    repo.store.delete(name)
    repo.store.create(name, bytes(stored))


def test_basebackup_retention_and_status_in_a_repository(repo_primary: RepoPrimary, tmp_path) -> None:
    primary = repo_primary
    primary.sql("CREATE TABLE t (i int PRIMARY KEY)")
    primary.switch_wal()  # the archiver creates the repository and records the system identifier
    history = wal_object("00000009.history")  # forked from 1 far ahead: never pruned, not a failover
    primary.repo().put_if_absent(history, b"1\tF0/9000000\tno recovery target specified\n")
    ids = []
    for batch in range(3):
        primary.sql(
            "INSERT INTO t SELECT generate_series(%s::int, %s::int)", (batch * 100 + 1, batch * 100 + 100)
        )
        primary.switch_wal()
        result = primary.basebackup("--keep", "2", "--compress", ["auto", "none", "gzip"][batch])
        assert list(primary.spool.iterdir()) == []  # the spool is gone after each run
        newest = repo_catalog.list_base_backups(primary.repo())[-1]
        assert newest.id in result.stdout and "archived WAL pruned" in result.stdout
        ids.append(newest.id)
        primary.switch_wal()
    primary.switch_wal()

    repo = primary.repo()
    kept = repo_catalog.list_base_backups(repo)
    assert [b.id for b in kept] == ids[1:]  # the oldest went, objects and all
    assert repo.list(base_prefix(ids[0])) == []
    sysid = primary.sql("SELECT system_identifier::text FROM pg_control_system()")[0][0]
    assert {b.system_identifier for b in kept} == {sysid}
    segments = _segments(primary)
    assert segments[0] == kept[0].start_wal_file  # nothing older survived ...
    first, last = (parse_wal_name(n).segno(16 * 1024 * 1024) for n in (segments[0], segments[-1]))
    assert segments == [segment_name(1, n) for n in range(first, last + 1)]  # ... nothing needed went
    assert repo.exists(history)

    # The newest backup reads back verified and passes the manifest checks.
    local = repo_catalog.download(repo, kept[-1], tmp_path / "fetched")
    base_verify.check_backup(local, for_server(15))

    # status --repo: every segment of the window read, a recoverable window from the oldest kept backup.
    data, problems = primary.status()
    assert problems == []
    assert data["window"]["from_backup"] == kept[0].id
    assert data["verified"]["segments"] == len(segments) - (
        parse_wal_name(kept[0].stop_wal_file).segno(16 * 1024 * 1024) - first
    )
    assert data["newest_wal"] == segments[-1] and data["missing_segments"] == []

    # A damaged segment in the window, then a deleted one: status says so and shrinks the window.
    damaged = segments[-2]
    _flip(repo, wal_object(damaged))
    data, problems = primary.status()
    assert data["damaged_segments"] == [damaged]
    assert any(f"WAL segment {damaged} failed verification" in p for p in problems)
    assert data["window"] is None or data["window"]["from_backup"] != kept[0].id
    missing = segments[-3]
    repo.delete(wal_object(missing))
    data, problems = primary.status()
    assert missing in data["missing_segments"]
    assert any(f"WAL segment {missing} missing" in p for p in problems)

    # A flipped byte in a base tar object: the download fails loudly and leaves nothing.
    tar = next(n for n in kept[-1].files if n.startswith("base.tar"))
    _flip(repo, base_prefix(kept[-1].id) + tar)
    with pytest.raises(IntegrityError, match=r"base\.tar"):
        repo_catalog.download(repo, kept[-1], tmp_path / "again")
    assert not (tmp_path / "again" / kept[-1].id).exists()
