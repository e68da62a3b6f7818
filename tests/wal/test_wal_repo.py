"""archive-wal and restore-wal with --repo, on every backend (local directory, moto's S3, Azurite).

The contract of issue 17: a WAL file is visible only when complete and never overwritten (one
conditional create); an identical duplicate exits 0 and a different one 1 with the object untouched;
restore-wal exits 1 only when the file is truly absent and 126 for every other failure (missing
repository or bucket, damaged object, missing or wrong key), and DEST never appears unless verified.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import pytest

from pgharness import (
    archiver_stats,
    binaries_for,
    retry,
    rmtree,
    run_pgtool,
    server_writable_dir,
    switch_segments,
)
from pgtool.pg.cluster import LocalCluster
from pgtool.repo import wal_name as wal_object
from pgtool.wal.repo_archive import SYSTEM_ID_OBJECT, RepoWal
from repo_backends import Backend

PGTOOL = Path(sys.executable).parent / "pgtool"


def summary(proc) -> dict:
    return json.loads(proc.stderr.strip().splitlines()[-1])


def archive(backend: Backend, path: Path, name: str, *extra: str, env: dict[str, str] | None = None):
    return run_pgtool("archive-wal", str(path), name, "--repo", backend.url, *extra, env=env or backend.env)


def restore(backend: Backend, name: str, dest: Path, *extra: str, env: dict[str, str] | None = None):
    return run_pgtool("restore-wal", name, str(dest), "--repo", backend.url, *extra, env=env or backend.env)


def test_round_trip_duplicate_and_conflict(backend, segment, tmp_path):
    path, name = segment
    first = archive(backend, path, name)
    assert first.returncode == 0, first.stderr
    assert summary(first)["result"] == "archived"
    repo = backend.open(create=False)
    assert repo.exists(wal_object(name))
    assert int(repo.read_bytes(SYSTEM_ID_OBJECT)) > 0

    again = archive(backend, path, name)
    assert again.returncode == 0, again.stderr
    assert summary(again)["result"] == "already archived"

    other = tmp_path / "other"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # same header, different content
    other.write_bytes(bytes(data))
    clash = archive(backend, other, name)
    assert clash.returncode == 1, clash.stderr
    assert "already exists with different content" in summary(clash)["error"]
    dest = tmp_path / "restored"
    ok = restore(backend, name, dest)
    assert ok.returncode == 0, ok.stderr
    assert dest.read_bytes() == path.read_bytes()  # the first copy, untouched


def test_absent_is_1_and_every_other_failure_126(backend, segment, tmp_path):
    path, name = segment
    dest = tmp_path / "dest"
    # No repository at all: not "absent" (recovery would end early), an error.
    missing_repo = restore(backend, name, dest)
    assert missing_repo.returncode == 126, missing_repo.stderr
    assert archive(backend, path, name).returncode == 0
    absent = restore(backend, "00000001000000FF000000FE", dest)
    assert absent.returncode == 1, absent.stderr
    assert summary(absent)["outcome"] == "not found"
    assert not dest.exists()


def test_damaged_object_is_refused_and_dest_never_appears(backend, segment, tmp_path):
    path, name = segment
    assert archive(backend, path, name).returncode == 0
    repo = backend.open(create=False)
    obj = wal_object(name)
    stored = bytearray(b"".join(repo.store.get_stream(obj)))
    stored[len(stored) // 2] ^= 0x01
    repo.store.delete(obj)
    assert repo.store.create(obj, bytes(stored))
    dest = tmp_path / "dest"
    proc = restore(backend, name, dest)
    assert proc.returncode == 126, proc.stderr
    assert obj in summary(proc)["error"]
    assert not dest.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".pgtool-tmp")]


def test_encrypted_repository_needs_its_key(backend, segment, tmp_path):
    path, name = segment
    key = tmp_path / "repo.key"
    key.write_bytes(os.urandom(32))
    assert archive(backend, path, name, "--repo-key-file", str(key)).returncode == 0
    # Nothing of the segment is readable without the key: the stored object is ciphertext.
    repo = backend.open(create=False, key_file=key)
    stored = b"".join(repo.store.get_stream(wal_object(name)))
    assert path.read_bytes()[:64] not in stored
    dest = tmp_path / "dest"
    no_key = restore(backend, name, dest)
    assert no_key.returncode == 126 and "no key" in summary(no_key)["error"], no_key.stderr
    wrong = tmp_path / "wrong.key"
    wrong.write_bytes(os.urandom(32))
    bad = restore(backend, name, dest, "--repo-key-file", str(wrong))
    assert bad.returncode == 126 and "wrong key" in summary(bad)["error"], bad.stderr
    assert not dest.exists()
    env = {**backend.env, "PGTOOL_REPO_KEY_FILE": str(key)}
    ok = restore(backend, name, dest, env=env)
    assert ok.returncode == 0, ok.stderr
    assert dest.read_bytes() == path.read_bytes()


def test_foreign_system_and_split_brain_are_refused(local_backend, segment, tmp_path):
    backend = local_backend
    path, name = segment
    assert archive(backend, path, name).returncode == 0
    repo = backend.open(create=False)
    # Another cluster's WAL: the repository records its system identifier.
    repo.delete(SYSTEM_ID_OBJECT)
    assert repo.put_if_absent(SYSTEM_ID_OBJECT, b"12345\n", compress=False)
    foreign = archive(backend, path, name)
    assert foreign.returncode == 1 and "database system" in summary(foreign)["error"]
    allowed = archive(backend, path, name, "--allow-system-id-change")
    assert allowed.returncode == 0, allowed.stderr
    # A newer timeline forked before this segment: the server is a former primary (split brain).
    fresh = Backend("local", str(tmp_path / "fresh-repo"), backend.env)
    fresh_repo = fresh.open()
    tli = int(name[:8], 16)
    history = f"{tli}\t0/0\tno recovery target specified\n".encode()
    assert fresh_repo.put_if_absent(wal_object(f"{tli + 1:08X}.history"), history)
    refused = archive(fresh, path, name)
    assert refused.returncode == 1 and "split brain" in summary(refused)["error"], refused.stderr
    assert not fresh_repo.exists(wal_object(name))


def test_usage_errors(local_backend, segment, tmp_path):
    path, name = segment
    both = run_pgtool(
        "archive-wal", str(path), name, "--repo", local_backend.url, "--archive-dir", str(tmp_path)
    )
    assert both.returncode == 2 and "not both" in summary(both)["error"]
    lz4 = archive(local_backend, path, name, "--compress", "lz4")
    assert lz4.returncode == 2
    creds = run_pgtool("archive-wal", str(path), name, "--repo", "s3://AKIA:secret@bucket/p")
    assert creds.returncode == 2 and "secret" not in creds.stderr
    env_both = run_pgtool(
        "restore-wal",
        name,
        str(tmp_path / "d"),
        env={"PGTOOL_REPO": local_backend.url, "PGTOOL_ARCHIVE_DIR": str(tmp_path)},
    )
    assert env_both.returncode == 126 and "both" in summary(env_both)["error"]


def test_listing_feeds_the_archive_model(backend, segment):
    path, name = segment
    assert archive(backend, path, name).returncode == 0
    wal = RepoWal(backend.open(create=False))
    files = wal.list_archive()
    assert [f.name for f in files] == [name]
    from pgtool.wal.archive import iter_content

    assert b"".join(iter_content(files[0])) == path.read_bytes()


@pytest.mark.parametrize("kind", ["s3", "azure"])
def test_a_real_server_archives_into_object_storage(kind, request, tmp_path, monkeypatch):
    """archive_command = pgtool archive-wal --repo s3://… (or azure://…), credentials from the server's
    environment; every switched segment lands, none fails, and each restores byte for byte."""
    from repo_backends import make_backend

    backend = make_backend(kind, request, tmp_path)
    work = server_writable_dir("pgtool-wal-repo-")
    command = f"{PGTOOL} archive-wal %p %f --repo {shlex.quote(backend.url)}"
    cluster = LocalCluster(
        binaries_for(15),
        work / "cluster",
        settings={"archive_mode": "on", "archive_command": command, "archive_timeout": "0"},
    )
    for key, value in backend.env.items():  # the server's environment, as a Secret would set it
        if key.startswith(("AWS_", "AZURE_")):
            monkeypatch.setenv(key, value)
    try:
        cluster.init().start()
        names = switch_segments(cluster, 3, rows=500)
        retry(lambda: archiver_stats(cluster)[0] >= 3, timeout=60)
        assert archiver_stats(cluster)[1] == 0
        listed = {f.name for f in RepoWal(backend.open(create=False)).list_archive()}
        assert set(names) <= listed
        for name in names:
            dest = tmp_path / name
            assert restore(backend, name, dest).returncode == 0
            # restore-wal checked the page header against the name and the system identifier
            assert dest.stat().st_size == 16 * 1024 * 1024
    finally:
        cluster.stop()
        rmtree(work)
