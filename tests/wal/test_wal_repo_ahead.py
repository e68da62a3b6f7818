"""archive-wal --ahead (issue 18): a real primary with a backlog drains it through a repository, uploading
followers in parallel; every segment PostgreSQL counts as archived is in the repository and reads back
verified; markers are never trusted without the object; archive_status is never touched by pgtool."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

from pgharness import binaries_for, retry, rmtree, run_pgtool, server_writable_dir
from pgtool.pg.cluster import LocalCluster
from pgtool.repo import wal_name as wal_object
from pgtool.wal.archive import iter_content
from pgtool.wal.repo_ahead import MARKER_DIR
from pgtool.wal.repo_archive import RepoWal
from repo_backends import make_backend

PGTOOL = Path(sys.executable).parent / "pgtool"


def _switch(cluster: LocalCluster, count: int) -> list[str]:
    names = []
    with cluster.connect(pin="off") as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS t(x int)")
        for _ in range(count):
            conn.execute("INSERT INTO t SELECT generate_series(1, 200)")
            names.append(conn.execute("SELECT pg_walfile_name(pg_current_wal_insert_lsn())").fetchone()[0])
            conn.execute("SELECT pg_switch_wal()")
    return names


def _stats(cluster: LocalCluster) -> tuple[int, int]:
    with cluster.connect(pin="off") as conn:
        return conn.execute("SELECT archived_count, failed_count FROM pg_stat_archiver").fetchone()


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
        settings={"archive_mode": "on", "archive_command": "''", "archive_timeout": "0"},
    )
    cluster.init().start()
    try:
        names = _switch(cluster, 10)
        yield cluster, backend, names
    finally:
        cluster.stop()
        rmtree(work)


def _set_archive_command(cluster: LocalCluster, command: str) -> None:
    from psycopg import sql

    # As the cluster writes its own settings: pgtool pointed at what the server user can run (the WAL
    # bundle, with the repository packages beside it, when the venv is out of its reach).
    command = cluster._runnable("archive_command", command)
    with cluster.connect(pin="off") as conn:
        conn.execute(sql.SQL("ALTER SYSTEM SET archive_command = {}").format(sql.Literal(command)))
        conn.execute("SELECT pg_reload_conf()")


@pytest.mark.parametrize("backlog", ["s3", "azure"], indirect=True)
def test_a_backlog_drains_ahead_and_every_segment_is_stored_intact(backlog):
    cluster, backend, names = backlog
    ready = sorted(p.name for p in (cluster.data_dir / "pg_wal" / "archive_status").iterdir())
    assert len([r for r in ready if r.endswith(".ready")]) >= 10
    _set_archive_command(cluster, f"{PGTOOL} archive-wal %p %f --repo {shlex.quote(backend.url)} --ahead 4")
    retry(lambda: _stats(cluster)[0] >= 10, timeout=120)
    assert _stats(cluster)[1] == 0
    archive = RepoWal(backend.open(create=False))
    stored = {f.name: f for f in archive.list_archive()}
    for name in names:
        # in the repository and intact: checksum, page header against the name, exact segment size
        assert len(b"".join(iter_content(stored[name]))) == 16 * 1024 * 1024
    log = cluster.log_file.read_text()
    outcomes = [json.loads(line)["result"] for line in log.splitlines() if '"command": "archive-wal"' in line]
    assert "archived ahead" in outcomes and "archived" in outcomes
    # every marker consumed by its own call; PostgreSQL's status files are PostgreSQL's (all .done now)
    markers = cluster.data_dir / "pg_wal" / MARKER_DIR
    assert not markers.exists() or not [m for m in markers.iterdir() if not m.name.startswith(".")]
    status = cluster.data_dir / "pg_wal" / "archive_status"
    assert {p.name for p in status.iterdir() if p.name.endswith(".done")} >= {f"{n}.done" for n in names}


def test_a_marker_is_never_trusted_without_the_object(backlog, tmp_path):
    """A marker whose object is gone (deleted, or another repository) must not make a segment archived."""
    cluster, backend, names = backlog
    pg_wal = cluster.data_dir / "pg_wal"
    first = names[0]
    proc = run_pgtool(
        "archive-wal", str(pg_wal / first), first, "--repo", backend.url, "--ahead", "3", env=backend.env
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stderr.strip().splitlines()[-1])
    assert summary["ahead"] == 3, summary
    repo = backend.open(create=False)
    follower = names[1]
    assert (pg_wal / MARKER_DIR / follower).is_file()
    repo.delete(wal_object(follower))  # the store lost it after acknowledging
    again = run_pgtool(
        "archive-wal", str(pg_wal / follower), follower, "--repo", backend.url, env=backend.env
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stderr.strip().splitlines()[-1])["result"] == "archived"  # uploaded, not trusted
    assert repo.exists(wal_object(follower))
    # A marker with another content's hash is not trusted either (and is consumed).
    third = names[2]
    (pg_wal / MARKER_DIR / third).write_text("0" * 64 + f" {backend.url}\n")
    repo.delete(wal_object(third))
    proc = run_pgtool("archive-wal", str(pg_wal / third), third, "--repo", backend.url, env=backend.env)
    assert json.loads(proc.stderr.strip().splitlines()[-1])["result"] == "archived"
    assert not (pg_wal / MARKER_DIR / third).exists()
    # pgtool never renamed a .ready file: the archiver still owns all of them
    ready = {p.name for p in (pg_wal / "archive_status").iterdir()}
    assert {f"{n}.ready" for n in names} <= ready


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
