"""pgtool's archive module (archive_library = pgtool_archive, issue 18), built for real PostgreSQL 15 and
18 servers: the archiver confirms segments through the uploader running ahead without a process per
segment, and every segment PostgreSQL counts as archived is in the repository, intact; the uploader
answers "ok" only for its own command, a segment name and a marker whose bytes match pg_wal now; a
killed uploader leaves the module to run its command, which it expands and reports exactly as
archive_command; `pgtool check` proves archiving through it; `pgtool archive-module` refuses what it
cannot build with one line."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shlex
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
from wal_fault_support import uploader_pids

from pgharness import (
    SERVER_HEADERS,
    archiver_stats,
    binaries_for,
    build_archive_module,
    retry,
    rmtree,
    run_pgtool,
    server_writable_dir,
    set_archive_module,
    switch_segments,
)
from pgtool.pg.cluster import LocalCluster
from pgtool.repo import wal_name as wal_object
from pgtool.wal import ahead_marks
from pgtool.wal.ahead_socket import SOCKET_NAME, Answerer, answerable
from pgtool.wal.archive import iter_content
from pgtool.wal.repo_ahead import Uploader
from pgtool.wal.repo_archive import RepoWal
from repo_backends import make_backend

PGTOOL = Path(sys.executable).parent / "pgtool"
SEG = 16 * 1024 * 1024


@pytest.fixture(scope="module")
def modules():
    """pgtool_archive.so for PostgreSQL 15 and 18, built once for this module's tests."""
    into = server_writable_dir("pgtool-module-")
    built = {}
    for major in (15, 18):
        (into / str(major)).mkdir()
        (into / str(major)).chmod(0o755)
        built[major] = build_archive_module(major, into / str(major))
    yield built
    rmtree(into)


def _primary(major: int, work: Path, segments: int) -> tuple[LocalCluster, list[str]]:
    """A started primary holding `segments` ready segments (archive_command empty keeps them)."""
    cluster = LocalCluster(
        binaries_for(major),
        work / "cluster",
        settings={"archive_mode": "on", "archive_command": "", "archive_timeout": "0"},
    )
    cluster.init().start()
    return cluster, switch_segments(cluster, segments)


def _server_dir(path: Path) -> Path:
    """A directory the server's user writes into (its archive commands do)."""
    path.mkdir()
    path.chmod(0o777)
    return path


def _lines(log: str, event: str) -> list[dict]:
    return [json.loads(line[line.index("{") :]) for line in log.splitlines() if f'"event": "{event}"' in line]


def _stored_intact(backend, names: list[str]) -> None:
    stored = {f.name: f for f in RepoWal(backend.open(create=False)).list_archive()}
    for name in names:  # checksum, page header against the name, exact size
        assert sum(len(c) for c in iter_content(stored[name])) == SEG, name


@pytest.fixture
def environment(monkeypatch):
    """Puts a backend's credentials in this process's environment: the server started here inherits
    them, as a Secret would set them for PostgreSQL."""

    def put(backend) -> None:
        for key, value in backend.env.items():
            if key.startswith(("AWS_", "AZURE_")):
                monkeypatch.setenv(key, value)

    return put


@pytest.mark.parametrize(("major", "kind"), [(15, "s3"), (18, "s3"), (18, "azure"), (15, "local")])
def test_the_module_drains_a_backlog_through_the_uploader(
    major, kind, modules, request, tmp_path, environment
):
    """Also into a local repository with an explicit --ahead: the uploader then compresses and writes
    ahead on the other cores, and the archiver only waits for its answers."""
    backend = make_backend(kind, request, tmp_path)
    environment(backend)
    work = server_writable_dir("pgtool-module-drain-")
    if kind == "local":  # where the server's user may write
        backend = dataclasses.replace(backend, url=str(work / "repo"))
    cluster, names = _primary(major, work, 12)
    try:
        command = f"{PGTOOL} archive-wal %p %f --repo {shlex.quote(backend.url)} --ahead 4"
        set_archive_module(cluster, modules[major], command)
        retry(lambda: archiver_stats(cluster)[0] >= len(names), timeout=180)
        assert archiver_stats(cluster)[1] == 0, cluster.log_tail(30)
        _stored_intact(backend, names)
        # The uploader ends on its own once idle and says how many segments it confirmed to the module.
        finished = retry(lambda: _lines(cluster.log_file.read_text(), "uploader finished"), timeout=60)
        log = cluster.log_file.read_text()
        calls = [c for c in _lines(log, "run finished") if c.get("wal_name") in names]
        confirmed = sum(f.get("confirmed_for_module", 0) for f in finished)
        # The first segment's call started the uploader; most segments never started a process.
        assert calls and calls[0]["result"] == "archived" and calls[0].get("uploader") == "started", calls
        assert confirmed >= len(names) // 2 and len(calls) + confirmed >= len(names), (calls, finished)
        assert all(f["level"] == "info" for f in finished), finished
        # The socket went with the uploader; PostgreSQL's status files are PostgreSQL's (all .done).
        pg_wal = cluster.data_dir / "pg_wal"
        assert not (pg_wal / ahead_marks.MARKER_DIR / SOCKET_NAME).exists()
        done = {p.name for p in (pg_wal / "archive_status").iterdir()}
        assert {f"{n}.done" for n in names} <= done

        # `pgtool check` reads the module's settings and proves archiving through it end to end.
        proc = run_pgtool("check", "--dsn", cluster.dsn(), "--repo", backend.url, "--format", "json")
        out = json.loads(proc.stdout)
        found = {c["check"]: (c["state"], c["message"]) for c in out["checks"]}
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert found["archive_library"][0] == "ok", found
        assert "pgtool's archive module" in found["archive_library"][1]
        assert found["pgtool_archive.command"][0] == "ok", found
        assert found["end-to-end"][0] == "ok", found
    finally:
        cluster.cleanup()
        rmtree(work)


def test_a_killed_uploader_leaves_the_module_to_run_its_command(modules, request, tmp_path, environment):
    """SIGKILL the uploader while it answers: its socket stays behind, refusing connections; the module
    runs the command for the next segments, a new uploader takes the socket over, nothing is lost."""
    backend = make_backend("s3", request, tmp_path)
    environment(backend)
    work = server_writable_dir("pgtool-module-kill-")
    cluster, names = _primary(15, work, 16)
    sock = cluster.data_dir / "pg_wal" / ahead_marks.MARKER_DIR / SOCKET_NAME
    try:
        set_archive_module(cluster, modules[15], f"{PGTOOL} archive-wal %p %f --repo {backend.url} --ahead 2")
        retry(lambda: sock.exists() and archiver_stats(cluster)[0] >= 2, timeout=120, interval=0.01)
        pids = retry(lambda: uploader_pids(cluster.data_dir / "pg_wal"), timeout=30, interval=0.01)
        os.kill(pids[0], signal.SIGKILL)
        killed_at = archiver_stats(cluster)[0]
        assert killed_at < len(names), "the uploader must die mid-backlog"
        retry(lambda: archiver_stats(cluster)[0] >= len(names), timeout=180)
        assert archiver_stats(cluster)[1] == 0, cluster.log_tail(30)
        _stored_intact(backend, names)
        log = cluster.log_file.read_text()
        calls = [c for c in _lines(log, "run finished") if c.get("wal_name") in names]
        # after the kill, segments went through the command (the stale socket refused the module)
        assert len(calls) >= 2, calls
        retry(lambda: not sock.exists(), timeout=60)  # a later uploader replaced it, then removed it
    finally:
        cluster.cleanup()
        rmtree(work)


def _ask(path: Path, request: bytes) -> str:
    """What the module does: connect, send the request, end writing, read the answer. The module
    connects by a path relative to the data directory; here, through the directory's descriptor."""
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(f"/proc/self/fd/{directory}/{path.name}")
            client.sendall(request)
            client.shutdown(socket.SHUT_WR)
            return client.makefile("rb").read().decode()
    finally:
        os.close(directory)


def test_the_uploader_answers_ok_only_for_its_command_and_a_verified_marker(request, tmp_path):
    """The answering side, against a real repository and real markers, in a pg_wal whose path is longer
    than a Unix socket's address may be (the socket is bound from inside its directory)."""
    backend = make_backend("s3", request, tmp_path)
    work = server_writable_dir("pgtool-module-answer-")
    cluster, names = _primary(15, work, 6)
    cluster.stop()
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "pg_wal"
    deep.mkdir(parents=True)
    key = tmp_path / "repo.key"
    key.write_bytes(b"the key file the call names")
    ident = ahead_marks.identity(backend.url, str(key))
    repo = backend.open(create=True)
    for name in names:
        data = (cluster.data_dir / "pg_wal" / name).read_bytes()
        (deep / name).write_bytes(data)
        repo.put_if_absent(wal_object(name), data)
        ahead_marks.write_marker(str(deep), name, hashlib.sha256(data).hexdigest(), ident, "there")
    uploader = Uploader(RepoWal(repo), str(deep), ident, 0, SEG)
    answerer = Answerer(uploader, "the command", backend.url, str(key))
    answerer.start()
    path = deep / ahead_marks.MARKER_DIR / SOCKET_NAME
    assert len(str(path)) > 108 and oct(path.stat().st_mode & 0o777) == "0o600"
    try:
        ask = lambda name, command=b"the command": _ask(path, command + b"\0" + name.encode() + b"\0")  # noqa: E731
        assert ask(names[0]) == "ok\n"
        assert not (deep / ahead_marks.MARKER_DIR / names[0]).exists()  # consumed
        assert ask(names[0]) == "no: not uploaded ahead\n"  # a marker answers once
        # another command (a reload to another repository): refused, the marker left for its own call
        assert ask(names[1], b"the other command").startswith("no: this uploader runs for another")
        assert (deep / ahead_marks.MARKER_DIR / names[1]).exists()
        assert ask(names[1]) == "ok\n"
        # a marker whose hash is not the bytes in pg_wal now
        marker = deep / ahead_marks.MARKER_DIR / names[2]
        marker.write_text("\n".join(["0" * 64, *marker.read_text().split("\n")[1:]]))
        assert ask(names[2]) == "no: not uploaded ahead\n"
        # the segment changed in pg_wal after its upload
        (deep / names[3]).write_bytes(b"\0" * SEG)
        assert ask(names[3]) == "no: not uploaded ahead\n"
        # not a request, not a segment
        assert _ask(path, b"the command") == "no: malformed request\n"
        assert _ask(path, b"the command\0" + names[4].encode() + b"\0extra") == "no: malformed request\n"
        assert ask("00000002.history") == "no: not a WAL segment name\n"
        assert ask("../" + names[4][3:]) == "no: not a WAL segment name\n"
        # a new key at the same path: no more answers from this uploader, which stops
        key.unlink()
        key.write_bytes(b"a new key")
        assert ask(names[4]) == "no: the key file changed\n"
        assert answerer.key_changed.is_set()  # the uploader's loop stops on it
        assert answerer.confirmed == 2 and answerer.refused == 9
    finally:
        answerer.stop()
        rmtree(work)
    assert not path.exists()
    with pytest.raises(OSError):
        _ask(path, b"the command\0" + names[5].encode() + b"\0")


@pytest.mark.parametrize("major", [15, 18])
def test_the_command_runs_as_archive_command_would(major, modules):
    """With no uploader, every segment goes through pgtool_archive.command: %p, %f and %% expanded as
    PostgreSQL expands archive_command, failures logged and counted as PostgreSQL logs them, an unset
    command reported as archiving not configured."""
    work = server_writable_dir("pgtool-module-command-")
    out = _server_dir(work / "out")
    cluster, names = _primary(major, work, 2)
    try:
        command = f"cp %p {out}/%f && printf '%%s' %f > {out}/%f.name"
        set_archive_module(cluster, modules[major], command)
        retry(lambda: archiver_stats(cluster)[0] >= 2, timeout=60)
        for name in names:
            assert (out / name).read_bytes() == (cluster.data_dir / "pg_wal" / name).read_bytes()
            assert (out / f"{name}.name").read_text() == name
        set_archive_module(cluster, modules[major], "exit 3")
        (failing,) = switch_segments(cluster, 1)
        retry(lambda: archiver_stats(cluster)[1] >= 1, timeout=60)
        log = cluster.log_file.read_text()
        assert "archive command failed with exit code 3" in log
        assert "The failed archive command was: exit 3" in log
        assert (cluster.data_dir / "pg_wal" / "archive_status" / f"{failing}.ready").exists()
        seen = len(cluster.log_file.read_text())  # the server warned so already before the module
        set_archive_module(cluster, modules[major], "")
        retry(lambda: "archiving is not configured" in cluster.log_file.read_text()[seen:], timeout=60)
        if major >= 17:
            retry(lambda: "pgtool_archive.command is not set." in cluster.log_file.read_text()[seen:])
    finally:
        cluster.cleanup()
        rmtree(work)


def test_archive_module_refuses_what_it_cannot_build(tmp_path):
    """One line and exit 2: headers of another major, an output directory that is not there."""
    pg15 = str(binaries_for(15).bindir)
    wrong = binaries_for(18).bindir.parent / "include" / "server"
    argv = ["archive-module", "--pg-bindir", pg15, "--output"]
    proc = run_pgtool(*argv, str(tmp_path), "--include-dir", str(wrong))
    assert proc.returncode == 2, proc.stderr
    assert "PostgreSQL 18's; the server is PostgreSQL 15" in proc.stderr
    assert list(tmp_path.iterdir()) == []
    proc = run_pgtool(*argv, str(tmp_path / "missing"), "--include-dir", str(SERVER_HEADERS[15]))
    assert proc.returncode == 2 and "cannot write into" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_pgtool(*argv, str(tmp_path), "--include-dir", str(SERVER_HEADERS[15]))
    assert proc.returncode == 0, proc.stderr
    assert f"archive_library = '{tmp_path / 'pgtool_archive.so'}'" in proc.stdout
    assert "archive_command = ''" in proc.stdout and "pgtool_archive.command = '" in proc.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["pgtool_archive.so"]  # no temporary left


def test_a_command_beyond_one_call_runs_whole_for_every_segment(modules, request, tmp_path, environment):
    """`archive-wal ... && cp %p DIR/%f`: the uploader's "ok" speaks for its call's repository only, so
    the uploader started by such a command answers nothing and every segment gets the whole command."""
    backend = make_backend("s3", request, tmp_path)
    environment(backend)
    work = server_writable_dir("pgtool-module-chain-")
    copies = _server_dir(work / "copies")
    cluster, names = _primary(15, work, 8)
    try:
        command = f"{PGTOOL} archive-wal %p %f --repo {backend.url} --ahead 4 && cp %p {copies}/%f"
        set_archive_module(cluster, modules[15], command)
        retry(lambda: archiver_stats(cluster)[0] >= len(names), timeout=180)
        assert sorted(p.name for p in copies.iterdir()) == sorted(names)
        _stored_intact(backend, names)
        finished = retry(lambda: _lines(cluster.log_file.read_text(), "uploader finished"), timeout=60)
        assert all(f.get("confirmed_for_module", 0) == 0 for f in finished), finished
        assert any(f.get("uploaded", 0) > 0 for f in finished), finished  # it still ran ahead
    finally:
        cluster.cleanup()
        rmtree(work)


def test_only_this_exact_call_is_answerable(monkeypatch):
    argv = ["/venv/bin/python", "/venv/bin/pgtool", "archive-wal", "pg_wal/X", "X", "--repo", "s3://b/p"]
    monkeypatch.setattr(sys, "orig_argv", argv)
    assert answerable("/venv/bin/pgtool archive-wal %p %f --repo s3://b/p", "pg_wal/X", "X")
    assert answerable("'/venv/bin/pgtool' archive-wal %p %f --repo 's3://b/p'", "pg_wal/X", "X")
    for other in (
        "/venv/bin/pgtool archive-wal %p %f --repo s3://b/p && cp %p /x/%f",
        "/venv/bin/pgtool archive-wal %p %f --repo s3://b/p 2>/dev/null",
        "/venv/bin/pgtool archive-wal %p %f --repo $REPO",
        "PGTOOL_LOG_LEVEL=error /venv/bin/pgtool archive-wal %p %f --repo s3://b/p",
        "/venv/bin/pgtool archive-wal %p %f --repo s3://b/p # note",
        "/usr/local/bin/archive.sh %p %f",
        "/venv/bin/pgtool archive-wal %p %f --repo 's3://b/p",  # unbalanced quote
    ):
        assert not answerable(other, "pg_wal/X", "X"), other
    monkeypatch.setattr(sys, "orig_argv", [*argv[:-1], "s3://b/100%"])
    assert answerable("/venv/bin/pgtool archive-wal %p %f --repo s3://b/100%%", "pg_wal/X", "X")


class _Silent:
    """A listener at the uploader's socket that accepts and never answers: a frozen uploader."""

    def __init__(self, cluster: LocalCluster) -> None:
        directory = cluster.data_dir / "pg_wal" / ahead_marks.MARKER_DIR
        directory.mkdir(exist_ok=True)
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(f"/proc/self/fd/{fd}/{SOCKET_NAME}")
        os.close(fd)
        os.chmod(directory / SOCKET_NAME, 0o777)  # the server's user connects
        os.chown(directory, *_owner(cluster.data_dir))
        self.sock.listen(16)
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.accepted.append(self.sock.accept()[0])

    def close(self) -> None:
        for conn in self.accepted:
            conn.close()
        self.sock.close()


def _owner(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid


def test_a_frozen_uploader_costs_the_answer_timeout_then_the_command_runs(modules):
    work = server_writable_dir("pgtool-module-frozen-")
    out = _server_dir(work / "out")
    cluster, names = _primary(18, work, 1)
    silent = _Silent(cluster)
    try:
        started = time.monotonic()
        set_archive_module(cluster, modules[18], f"cp %p {out}/%f")
        retry(lambda: (out / names[0]).exists(), timeout=90)
        waited = time.monotonic() - started
        assert waited >= 25, waited  # the module waited for an answer that never came (30 s) ...
        assert silent.accepted, "the module never asked"
        retry(lambda: archiver_stats(cluster)[0] >= 1, timeout=30)  # ... then ran its command: archived
        assert archiver_stats(cluster)[1] == 0
    finally:
        silent.close()
        cluster.cleanup()
        rmtree(work)


def test_no_command_runs_once_the_postmaster_is_gone(modules):
    """While the module waits for the uploader, the postmaster dies: the archiver exits without
    running the command (as PostgreSQL's own loop starts none after the postmaster died)."""
    work = server_writable_dir("pgtool-module-orphan-")
    out = _server_dir(work / "out")
    cluster, names = _primary(15, work, 1)
    silent = _Silent(cluster)
    try:
        set_archive_module(cluster, modules[15], f"cp %p {out}/%f")
        retry(lambda: silent.accepted, timeout=30, interval=0.05)  # the archiver is waiting on us
        archiver = _archiver_pid(cluster)
        postmaster = int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
        os.kill(postmaster, signal.SIGKILL)
        retry(lambda: _exited(archiver), timeout=30)
        assert not (out / names[0]).exists()
    finally:
        silent.close()
        cluster.cleanup()
        rmtree(work)


def _exited(pid: int) -> bool:
    """Gone, or a zombie nobody reaps (its parent, the postmaster, is dead)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _archiver_pid(cluster: LocalCluster) -> int:
    with cluster.connect() as conn:
        row = conn.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'archiver'").fetchone()
    return int(row[0])
