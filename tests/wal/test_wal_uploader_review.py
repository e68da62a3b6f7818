"""Review of archive-wal --ahead (issue 18): defects found by fault-testing the uploader running ahead.

Each test drives archive-wal as PostgreSQL does (a real primary's ready segments, the call run from the
data directory, a real repository on disk or on moto's S3 server) and asserts a guarantee docs/wal.md
states. Each failed against the first version of the uploader (commit 08b373d) and guards the fix.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from pgharness import binaries_for, retry, rmtree, server_writable_dir, set_archive_command
from pgtool.pg.cluster import LocalCluster
from pgtool.repo import StoreUnavailable, open_repository
from pgtool.repo import wal_name as wal_object
from pgtool.wal import repo_ahead
from pgtool.wal.repo_archive import RepoWal
from repo_backends import make_backend

PGTOOL = Path(sys.executable).parent / "pgtool"


@pytest.fixture
def ready(request, tmp_path, monkeypatch):
    """A primary with 6 ready segments (archive_command empty: PostgreSQL keeps them), and a backend."""
    backend = make_backend(getattr(request, "param", "s3"), request, tmp_path)
    for key, value in backend.env.items():
        if key.startswith(("AWS_", "AZURE_")):
            monkeypatch.setenv(key, value)  # the server's environment, which archive_command inherits
    work = server_writable_dir("pgtool-review-")
    cluster = LocalCluster(
        binaries_for(15),
        work / "cluster",
        # archive_command empty, not the shell command `''` (exit 127 makes the archiver exit FATAL and
        # restart only every 10 s): the later reload to pgtool's command wakes it at once.
        settings={"archive_mode": "on", "archive_command": "", "archive_timeout": "0"},
    )
    cluster.init().start()
    try:
        names = []
        with cluster.connect(pin="off") as conn:
            conn.execute("CREATE TABLE t(x int)")
            for _ in range(6):
                conn.execute("INSERT INTO t SELECT generate_series(1, 200)")
                names.append(
                    conn.execute("SELECT pg_walfile_name(pg_current_wal_insert_lsn())").fetchone()[0]
                )
                conn.execute("SELECT pg_switch_wal()")
        yield cluster, backend, names
    finally:
        cluster.stop()
        rmtree(work)


def _call(cwd: Path, env: dict[str, str], name: str, *options: str) -> tuple[int, list[dict]]:
    """archive-wal as PostgreSQL runs it: from the data directory, %p relative. Returns once the uploader
    it may have started has ended too (it shares stderr); its exit code and every JSON line logged."""
    argv = [str(PGTOOL), "archive-wal", f"pg_wal/{name}", name, *options]
    proc = subprocess.run(
        argv, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=300
    )
    return proc.returncode, [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]


def _result(lines: list[dict]) -> str:
    return next(r for r in lines if r.get("event") in ("run finished", "run failed")).get("result", "")


@pytest.mark.parametrize("ready", ["local"], indirect=True)
def test_a_segment_confirmed_ahead_is_in_the_calls_own_repository(ready):
    """--repo relative to the data directory (where PostgreSQL runs archive_command). The uploader runs
    with cwd "/", so it resolves the same string to another directory, uploads there, and the markers
    (which compare the URL string only) let the later calls exit 0 for segments their repository lacks."""
    cluster, _backend, names = ready
    rel = f"tmp/pgtool-review-{uuid.uuid4().hex}/repo"
    elsewhere = Path("/") / rel
    open_repository(str(elsewhere), create=True)  # any repository that resolves from "/"
    try:
        code, lines = _call(cluster.data_dir, {}, names[0], "--repo", rel, "--ahead", "3")
        assert code == 0 and _result(lines) == "archived", lines
        code, lines = _call(cluster.data_dir, {}, names[1], "--repo", rel, "--ahead", "3")
        assert code == 0, lines
        own = RepoWal(open_repository(str(cluster.data_dir / rel), create=False))
        # exit 0 must mean: this segment is in the repository this call names
        assert own.find(names[1]) is not None, (
            _result(lines),
            RepoWal(open_repository(str(elsewhere))).find(names[1]),
        )
    finally:
        rmtree(elsewhere.parent)


def test_a_relative_key_file_still_lets_the_uploader_run(ready):
    """--repo-key-file relative to the data directory works for every call, but the uploader each call
    starts (cwd "/") cannot read it: it dies at once, so every call with segments waiting starts another
    process and logs a warning, and no segment is ever uploaded ahead."""
    cluster, backend, names = ready
    (cluster.data_dir / "repo.key").write_bytes(os.urandom(32))
    options = ("--repo", backend.url, "--repo-key-file", "repo.key", "--ahead", "3")
    uploaders = []
    for name in names[:3]:
        code, lines = _call(cluster.data_dir, backend.env, name, *options)
        assert code == 0, lines
        uploaders += [r for r in lines if r.get("event") == "uploader finished"]
    assert uploaders, "no uploader was started"
    assert [u.get("warning") for u in uploaders if u["level"] == "warning"] == []
    assert len(uploaders) == 1, uploaders


def test_a_marker_does_not_confirm_a_segment_for_a_repository_replaced_under_the_same_url(ready):
    """The operator replaces the repository at the same URL by an encrypted one (new key) and reloads
    archive_command with --repo-key-file. Markers the uploader wrote for the old repository minutes ago
    still match URL, bytes and age, so the calls exit 0 for segments the new repository does not hold."""
    cluster, backend, names = ready
    code, lines = _call(cluster.data_dir, backend.env, names[0], "--repo", backend.url, "--ahead", "3")
    assert code == 0 and any(r.get("event") == "uploader finished" for r in lines), lines
    old = backend.open(create=False)
    for info in old.list(""):
        old.store.delete(info.name)
    key = cluster.data_dir.parent / "new.key"
    key.write_bytes(os.urandom(32))
    new = backend.open(create=True, key_file=str(key))
    options = ("--repo", backend.url, "--repo-key-file", str(key))
    code, lines = _call(cluster.data_dir, backend.env, names[1], *options)
    assert code == 0, lines
    # exit 0 must mean: stored in this repository, readable with its key
    assert new.exists(wal_object(names[1])), _result(lines)
    assert len(b"".join(new.open(wal_object(names[1])))) == 16 * 1024 * 1024


def test_followers_of_a_removed_pg_wal_is_empty(tmp_path):
    """The uploader lists followers on every turn; once the cluster's directory is removed between its
    postmaster.pid check and that listing, it must stop quietly, not die with UnboundLocalError (which
    its summary line then reports as the reason it stopped)."""
    assert repo_ahead.followers(str(tmp_path / "gone" / "pg_wal"), 1, 16 * 1024 * 1024, 8) == []


def _archived(cluster: LocalCluster) -> int:
    with cluster.connect(pin="off") as conn:
        return int(conn.execute("SELECT archived_count FROM pg_stat_archiver").fetchone()[0])


def test_after_a_reload_to_another_repository_no_wal_goes_to_the_old_one(ready, tmp_path):
    """archive_command is reloaded from repository A to B on a busy primary. The uploader started for A
    keeps running (it never learns of the reload) for up to MAX_LIFETIME: it goes on copying every new
    segment to A, whose markers B's calls then reject, and holds pg_wal's one uploader slot, so B gets
    no uploader and the calls archive one by one."""
    import threading
    import time

    cluster, backend, _names = ready
    other = backend.url.rsplit("/", 1)[0] + "/other"
    stop = threading.Event()

    def busy() -> None:
        with cluster.connect(pin="off") as conn:
            while not stop.is_set():
                conn.execute("INSERT INTO t SELECT generate_series(1, 200)")
                conn.execute("SELECT pg_switch_wal()")
                time.sleep(0.05)

    load = threading.Thread(target=busy)
    load.start()
    try:
        set_archive_command(cluster, f"{PGTOOL} archive-wal %p %f --repo {backend.url} --ahead 4")
        retry(lambda: _archived(cluster) >= 10, timeout=60)  # the archiver restarts within 10 s
        time.sleep(3)
        set_archive_command(cluster, f"{PGTOOL} archive-wal %p %f --repo {other} --ahead 4")
        time.sleep(2)  # uploads to A in flight at the reload end
        before = len(backend.open(create=False).list("wal/"))
        time.sleep(6)
        after = len(backend.open(create=False).list("wal/"))
    finally:
        stop.set()
        load.join()
    calls = [json.loads(line) for line in cluster.log_file.read_text().splitlines() if line.startswith("{")]
    ahead = [c for c in calls if c.get("result") == "archived ahead"]
    ahead_into_b = [c for c in ahead if c.get("path", "").endswith(f" in {other}")]
    # (segments sent to A after the reload, whether B's calls were ever confirmed ahead)
    assert (after - before, bool(ahead_into_b)) == (0, True)


def test_a_repository_that_vanished_is_never_recreated(cluster, work_dir):
    """Review of the local store: a local repository whose directory is gone (an unmounted volume, a
    removed tree) was silently recreated by the next archive-wal, which then reported success for a
    segment missing from the real repository. Once a pg_wal has archived into a repository, the
    repository reading as absent is exit 1, and a write never recreates the repository's directory."""
    from walsegments import complete_segment

    pg_wal = work_dir / "pg_wal"
    pg_wal.mkdir()
    repo = work_dir / "mnt" / "repo"
    first, name = complete_segment(cluster, work_dir)
    (pg_wal / name).write_bytes(first.read_bytes())
    code, lines = _call(work_dir, {}, name, "--repo", str(repo))
    assert code == 0 and _result(lines) == "archived", lines
    (repo.parent).rename(work_dir / "mnt.moved")  # unmounted: the mount point's content is gone
    (work_dir / "mnt").mkdir()
    second, name2 = complete_segment(cluster, work_dir)
    (pg_wal / name2).write_bytes(second.read_bytes())
    code, lines = _call(work_dir, {}, name2, "--repo", str(repo))
    failed = next(r for r in lines if r.get("event") == "run failed")
    assert code == 1 and "is gone" in failed["error"], lines
    assert not repo.exists()
    # a store whose directory goes away under an open repository refuses the write, naming it
    moved = RepoWal(open_repository(str(work_dir / "mnt.moved" / "repo")))
    (work_dir / "mnt.moved").rename(work_dir / "mnt.again")
    with pytest.raises(StoreUnavailable, match="is gone"):
        moved.repo.put_if_absent(wal_object(name2), second.read_bytes())
    assert not (work_dir / "mnt.moved").exists()
