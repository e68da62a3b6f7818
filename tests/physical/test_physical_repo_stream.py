"""basebackup --repo streams pg_basebackup's one tar into the repository, checked on the way, with no
local copy (pgtool.physical.repo_stream), on every backend: recover restores exactly the rows; a
stream cut short (pg_basebackup killed, the store stopped) leaves nothing listed; a tampered object is
refused; an incremental chain streamed through the repository restores; what cannot stream (a
tablespace, server-side compression) is spooled as before, saying why."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest
from physical_repo_support import RepoPrimary, start_repo_primary
from repo_pitr_support import flip_byte, rewrite_object
from repo_stream_support import (
    ROWS_SQL,
    fill,
    recover_damaged,
    recovered,
    start_streaming,
    store_stopped_when,
    terminate,
    written_bytes,
)

import repo_servers
from pgharness import pgtool_argv, retry, run_pgtool, start_cluster
from pgtool.pg.binaries import for_server
from pgtool.pg.command import children, libpq_args
from pgtool.pg.privileges import make_server_dir
from pgtool.physical import repo_catalog, repo_stream
from pgtool.physical.base_catalog import METADATA_FILE
from pgtool.physical.basebackup import pg_basebackup_argv
from pgtool.repo import StoreUnavailable, base_prefix
from repo_backends import Backend


@pytest.fixture(params=["local", "s3", "azure"])
def repo_primary(request, work_dir: Path, monkeypatch) -> RepoPrimary:
    primary = start_repo_primary(request.param, request, work_dir, monkeypatch)
    yield primary
    primary.cluster.cleanup()


@pytest.fixture(params=["local", "s3"])
def two_backends_primary(request, work_dir: Path, monkeypatch) -> RepoPrimary:
    primary = start_repo_primary(request.param, request, work_dir, monkeypatch)
    yield primary
    primary.cluster.cleanup()


def _objects(primary: RepoPrimary, stamp: str) -> list[str]:
    prefix = base_prefix(stamp)
    return sorted(o.name.removeprefix(prefix) for o in primary.repo().list(prefix))


def test_streamed_backup_recovers_exact_rows(repo_primary: RepoPrimary, work_dir: Path) -> None:
    primary = repo_primary
    fill(primary.sql, 1, 20000)
    primary.switch_wal()
    result = primary.basebackup("--keep", "2")
    assert '"streamed": true' in result.stderr, result.stderr
    assert list(primary.spool.iterdir()) == []  # not even a directory: nothing was spooled
    [info] = repo_catalog.list_base_backups(primary.repo())
    assert _objects(primary, info.id) == ["backup_manifest", "base.tar.lz4", METADATA_FILE]
    assert (info.wal_method, info.compression) == ("fetch", "client-lz4")
    assert "while streaming" in info.verified_with and info.size_bytes > 1_000_000
    assert info.start_wal_file <= info.stop_wal_file and info.timeline == 1
    fill(primary.sql, 20001, 25000)  # after the backup: replayed from the repository's WAL
    expected = primary.sql(ROWS_SQL)[0]
    primary.switch_wal()
    drill = run_pgtool("verify", "--base", "--repo", primary.backend.url, env=primary.backend.env)
    assert drill.returncode == 0, drill.stderr
    assert info.id in drill.stdout
    primary.lose_the_machine()

    pgdata = work_dir / "restored" / "copy"
    result = primary.recover(pgdata)
    assert result.returncode == 0, result.stderr
    assert f"from base backup {info.id}" in result.stdout
    assert sorted(p.name for p in pgdata.parent.iterdir()) == ["copy"]  # nothing left beside it
    assert recovered(15, pgdata) == expected
    assert expected[0] == 25000


def _start_and_kill(primary: RepoPrimary, name: str) -> str:
    """Start basebackup --repo and SIGKILL `name` (pg_basebackup, or pgtool itself) once pg_basebackup
    has written 12 MB (more than one 8 MiB part); returns pgtool's stderr."""
    proc, pid = start_streaming(primary, "--spool-dir", str(primary.spool))
    retry(lambda: written_bytes(pid) >= 12 << 20, timeout=120, interval=0.01)
    os.kill(pid if name == "pg_basebackup" else proc.pid, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == (1 if name == "pg_basebackup" else -signal.SIGKILL), stderr
    return stderr


def test_killed_stream_leaves_nothing_listed(repo_primary: RepoPrimary) -> None:
    primary = repo_primary
    fill(primary.sql, 1, 150000)
    primary.switch_wal()
    stderr = _start_and_kill(primary, "pg_basebackup")
    assert "pg_basebackup failed" in stderr, stderr
    repo = primary.repo()
    assert repo_catalog.list_base_backups(repo) == []
    assert repo.list("base/") == []  # the abandoned upload shows nothing, not even a partial object
    assert list(primary.spool.iterdir()) == []

    # pgtool itself killed outright (a node loss): still nothing listed; whatever a store keeps of the
    # stamp is reported by the next run and ignored by its retention and by status.
    _start_and_kill(primary, "pgtool")
    assert repo_catalog.list_base_backups(repo) == []
    left = repo_catalog.unlisted(repo)
    # a local store keeps the killed upload's part (NAME#N, never listed); the clouds show nothing
    assert len(left) == (1 if primary.backend.kind == "local" else 0)
    result = primary.basebackup("--keep", "1")
    [whole] = repo_catalog.list_base_backups(repo)
    assert whole.id not in left
    for stamp in left:
        assert f"base/{stamp}/" in result.stderr and "incomplete base backups" in result.stderr
    data, _ = primary.status()
    assert [b["id"] for b in data["backups"]] == [whole.id]


def test_tampered_objects_are_refused(two_backends_primary: RepoPrimary, work_dir: Path) -> None:
    primary = two_backends_primary
    fill(primary.sql, 1, 2000)
    primary.basebackup()
    primary.switch_wal()
    repo = primary.repo()
    [info] = repo_catalog.list_base_backups(repo)
    for name in ("base.tar.lz4", "backup_manifest"):
        pgdata = work_dir / f"damaged-{name}"
        recover_damaged(primary, base_prefix(info.id) + name, pgdata)
        assert not pgdata.exists()
        assert list(work_dir.glob(".pgtool-base-download-*")) == []
        # the damage is in the store: put back an intact copy of this object for the next round
        rewrite_object(repo, base_prefix(info.id) + name, flip_byte)


@pytest.mark.parametrize("kind", ["s3"])
def test_incremental_chain_streams_and_restores(kind, request, work_dir: Path, monkeypatch) -> None:
    """PostgreSQL 18 (the embedded build has no lz4 nor zstd: `auto` falls back to an uncompressed
    tar that the repository compresses)."""
    primary = start_repo_primary(kind, request, work_dir, monkeypatch, major=18, summarize_wal="on")
    try:
        fill(primary.sql, 1, 5000)
        primary.switch_wal()
        primary.basebackup("--incremental")
        fill(primary.sql, 5001, 8000)
        primary.switch_wal()
        primary.sql("CHECKPOINT")  # the summarizer needs the WAL since the full backup
        result = primary.basebackup("--incremental")
        assert "trying the next" in result.stderr  # client-lz4, client-zstd: not in this build
        full, incremental = repo_catalog.list_base_backups(primary.repo())
        assert incremental.parent == full.id and incremental.chain == [full.id]
        assert (incremental.compression, incremental.wal_method) == ("none", "fetch")
        assert _objects(primary, incremental.id) == ["backup_manifest", "base.tar", METADATA_FILE]
        assert incremental.size_bytes < full.size_bytes
        fill(primary.sql, 8001, 9000)
        expected = primary.sql(ROWS_SQL)[0]
        primary.switch_wal()
        primary.lose_the_machine()
        pgdata = work_dir / "restored" / "chain"
        result = primary.recover(pgdata)
        assert result.returncode == 0, result.stderr
        assert f"from base backup {incremental.id}" in result.stdout
        assert recovered(18, pgdata) == expected
    finally:
        primary.cluster.cleanup()


@pytest.mark.parametrize("kind", ["local"])
def test_what_cannot_stream_is_spooled_saying_why(kind, request, work_dir: Path, monkeypatch) -> None:
    primary = start_repo_primary(kind, request, work_dir, monkeypatch)
    try:
        fill(primary.sql, 1, 1000)
        primary.switch_wal()
        result = primary.basebackup("--compress", "server-lz4")
        assert "spooled locally, not streamed" in result.stderr
        assert "cannot add the backup manifest" in result.stderr
        location = make_server_dir(work_dir / "tablespace", 0o700)
        primary.sql(f"CREATE TABLESPACE extra LOCATION '{location}'")
        primary.sql("CREATE TABLE u TABLESPACE extra AS SELECT 1 AS x")
        result = primary.basebackup()
        assert "spooled locally, not streamed" in result.stderr and "tablespaces" in result.stderr
        assert list(primary.spool.iterdir()) == []
        first, second = repo_catalog.list_base_backups(primary.repo())
        assert "pg_wal.tar" in first.files and first.wal_method == "stream"
        assert len(second.tablespaces) == 1 and second.wal_method == "stream"
    finally:
        primary.cluster.cleanup()


def test_sigterm_mid_stream_leaves_nothing(work_dir: Path, request, monkeypatch) -> None:
    """A pod stop (SIGTERM to pgtool): pg_basebackup is stopped, the upload abandoned, exit 130."""
    primary = start_repo_primary("s3", request, work_dir, monkeypatch)
    try:
        fill(primary.sql, 1, 60000)
        primary.switch_wal()
        proc, pid = start_streaming(primary)
        # SIGTERM to pgtool once pg_basebackup has written a few MB
        retry(lambda: written_bytes(pid) >= 4 << 20, timeout=120, interval=0.01)
        terminate(proc)
        assert primary.repo().list("base/") == []
    finally:
        primary.cluster.cleanup()


@pytest.mark.parametrize("kind", ["s3", "azure"])
def test_store_stopped_mid_stream_fails_and_shows_nothing(kind, work_dir: Path) -> None:
    """The store stops answering mid-upload (SIGSTOP): the store's error is reported (not pg_basebackup's
    broken pipe, which is only its echo), pg_basebackup is ended, and once the store answers again
    nothing of the upload is visible."""
    server = repo_servers.start_server(kind, work_dir / "server")
    cluster = start_cluster(15)
    try:
        server.make_bucket("stream")
        scheme = "s3" if kind == "s3" else "azure"
        backend = Backend(kind, f"{scheme}://stream/p", server.env(), server)
        repo = backend.open(max_retries=1, retry_timeout=3, timeout=5)
        with cluster.connect("postgres", pin="off") as conn:
            fill(lambda q, p=None: conn.execute(q, p), 1, 150000)
        codec = repo_stream.CODECS["client-lz4"]
        name = "base/20261206T080000Z/" + codec.object

        def uploading() -> bool:
            """pg_basebackup runs and has written 12 MB (more than one 8 MiB part)."""
            kids = children()
            return bool(kids) and written_bytes(kids[0].pid) >= 12 << 20

        with libpq_args(str(cluster.dsn("postgres"))) as (conninfo, env):
            argv = pg_basebackup_argv(
                for_server(15).path("pg_basebackup"), conninfo, "-", "t", codec.name, wal_method="fetch"
            )
            argv.append("--manifest-checksums=SHA256")
            with (
                store_stopped_when(server, uploading, interval=0.01),
                pytest.raises(StoreUnavailable) as info,
            ):
                repo_stream.stream_into(repo, name, argv, env, codec, 16 << 20)
        assert name in info.value.one_line()
        assert children() == []  # pg_basebackup ended (its next write broke the pipe)
        assert repo.list("base/") == []
    finally:
        cluster.cleanup()
        server.stop()


def test_progress_on_a_terminal_only(two_backends_primary: RepoPrimary) -> None:
    """On a terminal pg_basebackup's progress (bytes of its estimate) is shown on one line; in logs
    (not a terminal: the other tests) it is neither asked for nor logged."""
    import pty
    import subprocess

    primary = two_backends_primary
    fill(primary.sql, 1, 5000)
    primary.switch_wal()
    leader, follower = pty.openpty()
    args = ["basebackup", "--dsn", primary.dsn(), "--repo", primary.backend.url]
    proc = subprocess.Popen(
        [*pgtool_argv(), *args], stderr=follower, stdout=subprocess.DEVNULL, env=primary.backend.env
    )
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    assert proc.wait(timeout=120) == 0, shown
    os.close(leader)
    assert re.search(rb"\r\x1b\[K\s*\d+/\d+ kB \(100%\)", shown), shown
    result = primary.basebackup()
    assert " kB (" not in result.stderr


def test_stream_checks_name_each_difference(local_backend, work_dir: Path) -> None:
    """What `repo_stream.verify` refuses, on a real streamed backup (gzip: the third codec path) into
    an encrypted repository."""
    from dataclasses import replace

    from pgtool.errors import OperationError

    key = work_dir / "repo.key"
    key.write_bytes(os.urandom(32))
    repo = local_backend.open(key_file=str(key))
    cluster = start_cluster(15)
    try:
        codec = repo_stream.CODECS["gzip"]
        with libpq_args(str(cluster.dsn("postgres"))) as (conninfo, env):
            argv = pg_basebackup_argv(
                for_server(15).path("pg_basebackup"), conninfo, "-", "t", codec.name, wal_method="fetch"
            )
            argv.append("--manifest-checksums=SHA256")
            streamed, check = repo_stream.stream_into(repo, "base/x/base.tar.gz", argv, env, codec, 16 << 20)
    finally:
        cluster.cleanup()
    assert check.timeline == 1 and check.start_lsn and "while streaming" in check.method
    assert repo.read_bytes("base/x/base.tar.gz")[:2] == b"\x1f\x8b"  # as pg_basebackup wrote it ...
    stored = b"".join(repo.store.get_stream("base/x/base.tar.gz"))
    assert repo.encrypted and b"\x1f\x8b\x08" not in stored[:64]  # ... and encrypted in the store
    wal = next(n for n in streamed.files if n.startswith("pg_wal/0"))
    size = streamed.files["global/pg_control"][0]
    damaged = bytearray(streamed.manifest)
    damaged[100] ^= 1
    cases = {
        "global/pg_control does not match its SHA-256": {"global/pg_control": (size, "0" * 64)},
        "global/pg_control has 1 bytes": {"global/pg_control": (1, "0" * 64)},
        "base/1/999999 is in the tar but not in the manifest": {"base/1/999999": (0, "")},
    }
    for message, extra in cases.items():
        with pytest.raises(OperationError, match=message):
            repo_stream.verify(replace(streamed, files={**streamed.files, **extra}), 16 << 20, "w")
    for message, gone in (("WAL segment .* is missing", wal), ("without backup_manifest", "backup_manifest")):
        files = {k: v for k, v in streamed.files.items() if k != gone}
        with pytest.raises(OperationError, match=message):
            repo_stream.verify(replace(streamed, files=files), 16 << 20, "w")
    with pytest.raises(OperationError, match="manifest checksum mismatch"):
        repo_stream.verify(replace(streamed, manifest=bytes(damaged)), 16 << 20, "w")
