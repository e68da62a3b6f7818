"""archive-wal --ahead (issue 18): a real primary with a backlog drains it through a repository, uploading
the ready segments in parallel from one uploader; every segment PostgreSQL counts as archived is in the
repository and reads back verified; a marker is trusted only for the same bytes, repository and a recent
upload; a call waits for an upload of its segment in progress; archive_status is never touched by pgtool."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pgharness import (
    archiver_stats,
    binaries_for,
    retry,
    rmtree,
    run_pgtool,
    server_writable_dir,
    set_archive_command,
    switch_segments,
)
from pgtool.pg.cluster import LocalCluster
from pgtool.repo import wal_name as wal_object
from pgtool.wal import ahead_marks
from pgtool.wal.ahead_marks import MARKER_DIR, MARKER_MAX_AGE
from pgtool.wal.archive import iter_content
from pgtool.wal.repo_archive import RepoWal
from repo_backends import make_backend

PGTOOL = Path(sys.executable).parent / "pgtool"


@pytest.fixture
def backlog(request, tmp_path, monkeypatch):
    """A primary with 10 ready segments (archive_command empty: PostgreSQL keeps them), and a backend."""
    kind = getattr(request, "param", "s3")
    backend = make_backend(kind, request, tmp_path)
    for key, value in backend.env.items():
        if key.startswith(("AWS_", "AZURE_")):
            monkeypatch.setenv(key, value)
    work = server_writable_dir("pgtool-ahead-")
    cluster = LocalCluster(
        binaries_for(15),
        work / "cluster",
        # archive_command empty, not the shell command `''` (exit 127 makes the archiver exit FATAL and
        # restart only every 10 s): the later reload to pgtool's command wakes it at once.
        settings={"archive_mode": "on", "archive_command": "", "archive_timeout": "0"},
    )
    cluster.init().start()
    try:
        names = switch_segments(cluster, 10)
        yield cluster, backend, names
    finally:
        cluster.stop()
        rmtree(work)


def _summary(stderr: str) -> dict:
    """The call's own summary line (an uploader it started logs its own line to the same stderr)."""
    lines = [json.loads(line) for line in stderr.strip().splitlines()]
    return next(r for r in reversed(lines) if r.get("event") in ("run finished", "run failed"))


def _uploader_lines(log: str) -> list[dict]:
    return [json.loads(line) for line in log.splitlines() if '"event": "uploader finished"' in line]


@pytest.mark.parametrize("backlog", ["s3", "azure"], indirect=True)
def test_a_backlog_drains_ahead_and_every_segment_is_stored_intact(backlog):
    cluster, backend, names = backlog
    ready = sorted(p.name for p in (cluster.data_dir / "pg_wal" / "archive_status").iterdir())
    assert len([r for r in ready if r.endswith(".ready")]) >= 10
    set_archive_command(cluster, f"{PGTOOL} archive-wal %p %f --repo {shlex.quote(backend.url)} --ahead 4")
    retry(lambda: archiver_stats(cluster)[0] >= 10, timeout=120)
    assert archiver_stats(cluster)[1] == 0
    archive = RepoWal(backend.open(create=False))
    stored = {f.name: f for f in archive.list_archive()}
    for name in names:
        # in the repository and intact: checksum, page header against the name, exact segment size
        assert len(b"".join(iter_content(stored[name]))) == 16 * 1024 * 1024
    log = cluster.log_file.read_text()
    calls = [json.loads(line) for line in log.splitlines() if '"event": "run finished"' in line]
    outcomes = [c["result"] for c in calls if c["command"] == "archive-wal"]
    # the first call archived its own segment and started the uploader; later calls only confirmed
    assert outcomes[0] == "archived" and calls[0].get("uploader") == "started", calls[0]
    assert outcomes.count("archived ahead") >= 5, outcomes
    # the uploader ends on its own once nothing is left, and says what it did
    finished = retry(lambda: _uploader_lines(cluster.log_file.read_text()), timeout=30)
    assert finished[0]["level"] == "info" and finished[0]["uploaded"] >= outcomes.count("archived ahead")
    # PostgreSQL's status files are PostgreSQL's (all .done now); markers were consumed by their calls,
    # but for one the uploader may have re-stored in the instant between its call's exit and PostgreSQL
    # marking it done: such a marker names a segment archived and stored (and goes once it is recycled)
    status = cluster.data_dir / "pg_wal" / "archive_status"
    assert {p.name for p in status.iterdir() if p.name.endswith(".done")} >= {f"{n}.done" for n in names}
    markers = cluster.data_dir / "pg_wal" / MARKER_DIR
    left = [m.name for m in markers.iterdir() if not m.name.startswith(".")] if markers.exists() else []
    assert len(left) <= 1 and set(left) <= set(stored), left


def test_a_marker_is_trusted_only_for_the_same_bytes_repository_and_recent_upload(backlog, tmp_path):
    """A marker answers for exactly the bytes the uploader stored in this repository, recently; any
    other marker is consumed and the call archives its segment itself."""
    cluster, backend, names = backlog
    pg_wal = cluster.data_dir / "pg_wal"
    first = names[0]
    argv = ["archive-wal", str(pg_wal / first), first, "--repo", backend.url, "--ahead", "3"]
    proc = run_pgtool(*argv, env=backend.env)  # returns once the uploader it started has finished
    assert proc.returncode == 0, proc.stderr
    assert _summary(proc.stderr)["uploader"] == "started"
    uploader = [json.loads(line) for line in proc.stderr.splitlines() if "uploader finished" in line]
    assert uploader and uploader[0]["uploaded"] >= len(names) - 1, proc.stderr
    assert all((pg_wal / MARKER_DIR / n).is_file() for n in names[1:])
    repo = backend.open(create=False)

    def call(name: str, url: str = backend.url) -> dict:
        proc = run_pgtool("archive-wal", str(pg_wal / name), name, "--repo", url, env=backend.env)
        assert proc.returncode == 0, proc.stderr
        assert not (pg_wal / MARKER_DIR / name).exists()  # consumed, whatever it said
        status = pg_wal / "archive_status"
        (status / f"{name}.ready").rename(status / f"{name}.done")  # as PostgreSQL does on success
        return _summary(proc.stderr)

    # a sound marker: confirmed without a request
    assert call(names[1])["result"] == "archived ahead"
    # another repository's call: not this marker's upload
    assert call(names[2], url=backend.url + "-other")["result"] == "archived"
    # a marker with another content's hash
    marker = pg_wal / MARKER_DIR / names[3]
    lines = marker.read_text().split("\n")
    marker.write_text("\n".join(["0" * 64, *lines[1:]]))
    repo.delete(wal_object(names[3]))
    assert call(names[3])["result"] == "archived"
    assert repo.exists(wal_object(names[3]))
    # a marker older than MARKER_MAX_AGE
    marker = pg_wal / MARKER_DIR / names[4]
    old = time.time() - MARKER_MAX_AGE - 60
    os.utime(marker, (old, old))
    repo.delete(wal_object(names[4]))
    assert call(names[4])["result"] == "archived"
    assert repo.exists(wal_object(names[4]))
    # pgtool never renamed a .ready file: the archiver still owns those it has not called for
    ready = {p.name for p in (pg_wal / "archive_status").iterdir()}
    assert {f"{n}.ready" for n in [first, *names[5:]]} <= ready


def test_a_call_waits_for_the_upload_of_its_segment_in_progress(backlog):
    """A call whose segment is being uploaded (its claim held) waits for that upload, then confirms its
    marker; if the upload ends without one, the call uploads the segment itself."""
    cluster, backend, names = backlog
    pg_wal = str(cluster.data_dir / "pg_wal")
    name = names[0]
    argv = [str(PGTOOL), "archive-wal", f"{pg_wal}/{name}", name, "--repo", backend.url]
    env = {**os.environ, **backend.env}
    repo = backend.open(create=True)
    for outcome in ("marker", "no marker"):
        claim = ahead_marks.try_claim(pg_wal, name)
        assert claim is not None
        proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        assert proc.poll() is None  # waiting on the claim
        if outcome == "marker":
            data = (cluster.data_dir / "pg_wal" / name).read_bytes()
            repo.put_if_absent(wal_object(name), data)
            digest = hashlib.sha256(data).hexdigest()
            ahead_marks.write_marker(pg_wal, name, digest, backend.url, repo.where(wal_object(name)))
        ahead_marks.release(claim)
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        expected = "archived ahead" if outcome == "marker" else "already archived"
        assert _summary(err)["result"] == expected, err


def test_prefetch_serves_only_verified_exact_names_and_follows_the_timeline(backlog, tmp_path):
    """restore-wal --prefetch: the next segments land verified in pg_wal/.pgtool-prefetch and are moved
    into place by their own calls; a damaged object is never spooled; a segment of a newer timeline
    empties the spool of the old one."""
    cluster, backend, names = backlog
    pg_wal = cluster.data_dir / "pg_wal"
    for name in names:
        proc = run_pgtool(
            "archive-wal", str(pg_wal / name), name, "--repo", backend.url, "--ahead", "0", env=backend.env
        )
        assert proc.returncode == 0, proc.stderr
    repo = backend.open(create=False)
    target = tmp_path / "pg_wal"
    target.mkdir()
    spool = target / ".pgtool-prefetch"

    def restore(name: str, depth: int = 4):
        argv = ["restore-wal", name, str(target / "RECOVERYXLOG"), "--repo", backend.url]
        proc = run_pgtool(*argv, "--prefetch", str(depth), env=backend.env)
        return proc, json.loads(proc.stderr.strip().splitlines()[-1])

    proc, first = restore(names[0])
    assert proc.returncode == 0 and first["prefetched"] == 4, proc.stderr
    assert sorted(p.name for p in spool.iterdir()) == names[1:5]
    proc, second = restore(names[1])
    assert proc.returncode == 0 and ".pgtool-prefetch" in second["path"]
    assert (target / "RECOVERYXLOG").read_bytes() == b"".join(repo.open(wal_object(names[1])))
    # names[6] is damaged in the store: the refill after names[2] fetches 5 and 6, keeps only 5
    obj = wal_object(names[6])
    stored = bytearray(b"".join(repo.store.get_stream(obj)))
    stored[len(stored) // 2] ^= 0x40
    repo.store.delete(obj)
    repo.store.create(obj, bytes(stored))
    proc, _third = restore(names[2])
    assert proc.returncode == 0
    assert names[5] in {p.name for p in spool.iterdir()} and names[6] not in {p.name for p in spool.iterdir()}
    proc, damaged = restore(names[6])
    assert proc.returncode == 126 and obj in damaged["error"]
    # A newer timeline's segment (here: names[7]'s content, whose header may carry the parent timeline)
    newer = "00000002" + names[7][8:]
    repo.put_if_absent(wal_object(newer), b"".join(repo.open(wal_object(names[7]))))
    proc, _ = restore(newer)
    assert proc.returncode == 0, proc.stderr
    assert not [p for p in spool.iterdir() if p.name.startswith("00000001")]
