"""recover --repo of a single backup streams each tar object from the store into PGDATA, verified on the
way (pgtool.recovery.repo_base.stream_unpack), with no local download: never a scratch directory; a
flipped byte in a tar object or a store that stops answering mid-read fails naming the object, and
PGDATA is left as it was (empty), whichever the layout (streamed or spooled) and the backend."""

from __future__ import annotations

import contextlib
import json
import stat
import time
from pathlib import Path

import pytest
from physical_repo_support import RepoPrimary, repo_primary_on, start_repo_primary
from physical_support import adopt
from repo_pitr_support import flip_byte, rewrite_object
from repo_stream_support import (
    ROWS_SQL,
    backed_up,
    fill,
    recover_damaged,
    recovered,
    start_recover,
    store_stopped_when,
    terminate,
)

import repo_servers
from pgharness import retry
from pgtool.physical import repo_catalog
from pgtool.physical.tar_stream import tar_stem
from pgtool.recovery.recover import prepare_recovery
from pgtool.repo import StoreUnavailable, base_prefix
from repo_backends import Backend


def _base_tar(primary: RepoPrimary) -> tuple[str, str]:
    """The newest backup's stamp and the repository name of its base.tar* object."""
    info = repo_catalog.list_base_backups(primary.repo())[-1]
    [rel] = [rel for rel in info.files if tar_stem(rel) == "base"]
    return info.id, base_prefix(info.id) + rel


def _empty_pgdata(work_dir: Path) -> Path:
    """An empty PGDATA that exists before recover (mode 0750, so a change would show)."""
    pgdata = work_dir / "restored" / "copy"
    pgdata.mkdir(parents=True)
    pgdata.chmod(0o750)
    return pgdata


def _left_as_it_was(pgdata: Path) -> None:
    assert pgdata.is_dir() and list(pgdata.iterdir()) == []
    assert stat.S_IMODE(pgdata.stat().st_mode) == 0o750
    # no scratch download, no tablespace directory: only the (empty) PGDATA beside it
    assert sorted(p.name for p in pgdata.parent.iterdir()) == [pgdata.name]


def test_streams_without_a_download_directory(work_dir: Path, request, monkeypatch) -> None:
    """Watched while recover runs: no `.pgtool-base-download-*` appears beside PGDATA, ever."""
    primary = start_repo_primary("local", request, work_dir, monkeypatch)
    try:
        fill(primary.sql, 1, 20000)
        primary.switch_wal()
        primary.basebackup()
        fill(primary.sql, 20001, 21000)
        expected = primary.sql(ROWS_SQL)[0]
        primary.switch_wal()
        primary.lose_the_machine()
        pgdata = work_dir / "restored" / "copy"
        pgdata.parent.mkdir()
        proc = start_recover(primary, pgdata)
        seen: set[str] = set()
        while proc.poll() is None:
            seen.update(p.name for p in pgdata.parent.iterdir())
            time.sleep(0.001)
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        assert '"streaming base backup"' in stderr and "downloading base backup" not in stderr
        assert "copy" in seen and not any(n.startswith(".pgtool-base-download") for n in seen), seen
        assert recovered(15, pgdata) == expected
    finally:
        primary.cluster.cleanup()


@pytest.mark.parametrize(("kind", "layout"), [("local", "spooled"), ("s3", "streamed"), ("azure", "spooled")])
def test_flipped_byte_in_a_tar_leaves_pgdata_empty(
    kind: str, layout: str, work_dir: Path, request, monkeypatch
) -> None:
    """The damage sits mid-object: what was unpacked before the reader reached the object's end and
    found it is removed again; PGDATA (empty before) is empty, and still there."""
    primary = start_repo_primary(kind, request, work_dir, monkeypatch)
    try:
        result = backed_up(primary, 20000, *(("--compress", "server-lz4") if layout == "spooled" else ()))
        assert ("spooled locally, not streamed" in result.stderr) == (layout == "spooled")
        _, name = _base_tar(primary)
        info = repo_catalog.list_base_backups(primary.repo())[-1]
        assert ("pg_wal.tar" in info.files) == (layout == "spooled")
        pgdata = _empty_pgdata(work_dir)
        result = recover_damaged(primary, name, pgdata)
        [error] = [json.loads(ln)["error"] for ln in result.stderr.splitlines() if '"run failed"' in ln]
        assert name in error and "checksum" in error and "\n" not in error, error
        assert "unexpected error" not in error
        _left_as_it_was(pgdata)
    finally:
        primary.cluster.cleanup()


def _written(pgdata: Path) -> int:
    """Bytes of the files under `pgdata` now (files may vanish meanwhile: recover's undo)."""
    total = 0
    for path in pgdata.rglob("*"):
        with contextlib.suppress(FileNotFoundError):
            total += path.lstat().st_size if path.is_file() else 0
    return total


def test_sigterm_mid_read_leaves_pgdata_empty(work_dir: Path, request, monkeypatch) -> None:
    """A pod stop (SIGTERM) while the tars stream in: exit 130, PGDATA emptied again."""
    primary = start_repo_primary("local", request, work_dir, monkeypatch)
    try:
        backed_up(primary, 150000)
    finally:
        primary.cluster.cleanup()
    pgdata = _empty_pgdata(work_dir)
    proc = start_recover(primary, pgdata)
    retry(lambda: _written(pgdata) >= 8 << 20 or proc.poll() is not None, timeout=120, interval=0.002)
    terminate(proc)
    _left_as_it_was(pgdata)


@pytest.mark.parametrize("kind", ["s3", "azure"])
def test_store_stopped_mid_read_leaves_pgdata_empty(kind: str, work_dir: Path, monkeypatch) -> None:
    """The store stops answering (SIGSTOP) once some MB are unpacked: recover fails naming the object
    being read, and PGDATA is emptied again."""
    server = repo_servers.start_server(kind, work_dir / "server")
    try:
        server.make_bucket("recover")
        backend = Backend(kind, f"{'s3' if kind == 's3' else 'azure'}://recover/p", server.env(), server)
        primary = repo_primary_on(backend, work_dir, monkeypatch)
        try:
            backed_up(primary, 150000)
        finally:
            primary.cluster.cleanup()
        _, name = _base_tar(primary)
        repo = backend.open(create=False, max_retries=1, retry_timeout=3, timeout=5)
        pgdata = _empty_pgdata(work_dir)
        with (
            store_stopped_when(server, lambda: _written(pgdata) >= 12 << 20, interval=0.005),
            pytest.raises(StoreUnavailable) as info,
        ):
            prepare_recovery(None, None, pgdata, repo=repo)
        assert name in info.value.one_line()
        _left_as_it_was(pgdata)
    finally:
        server.stop()


def test_tablespace_streams_and_a_damaged_one_is_undone(work_dir: Path, request, monkeypatch) -> None:
    """A spooled backup with a tablespace: its tar streams into `<PGDATA>.tablespaces/<oid>` and the
    rows in it come back; with a byte flipped in that tar, recover removes the tablespace directory
    it created as well as everything in PGDATA."""
    from pgtool.pg.privileges import make_server_dir

    primary = start_repo_primary("local", request, work_dir, monkeypatch)
    try:
        location = make_server_dir(work_dir / "tablespace", 0o700)
        primary.sql(f"CREATE TABLESPACE extra LOCATION '{location}'")
        primary.sql("CREATE TABLE u TABLESPACE extra AS SELECT g AS x FROM generate_series(1, 5000) g")
        primary.switch_wal()
        primary.basebackup()
        primary.switch_wal()
        info = repo_catalog.list_base_backups(primary.repo())[-1]
        [(oid, rel)] = [
            (stem, r) for r in info.files if (stem := tar_stem(r)) not in (None, "base", "pg_wal")
        ]
        primary.lose_the_machine()

        name = base_prefix(info.id) + rel
        pgdata = _empty_pgdata(work_dir)
        recover_damaged(primary, name, pgdata)
        _left_as_it_was(pgdata)  # no copy.tablespaces left beside it

        rewrite_object(primary.repo(), name, flip_byte)  # intact again
        result = primary.recover(pgdata)
        assert result.returncode == 0, result.stderr
        assert (work_dir / "restored" / "copy.tablespaces" / str(oid)).is_dir()
        copy = adopt(15, pgdata)
        try:
            copy.start()
            copy.wait_until_ready(180, primary=True)
            with copy.connect(pin="off") as conn:
                assert conn.execute("SELECT count(*), sum(x) FROM u").fetchone() == (5000, 12502500)
        finally:
            copy.cleanup()
    finally:
        primary.cluster.cleanup()
