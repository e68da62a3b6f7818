"""Archiving ahead under faults (issue 18): a real primary under pgbench archives through S3 (moto) and
Azure (Azurite) across a 20 ms round-trip link (wal_fault_support.DelayLine; this kernel has no netem).
While it runs, archive-wal processes and the uploader running ahead are killed with SIGKILL at random
moments (preferring ones uploading several segments at once), the store becomes unreachable in the middle of a
batch (every connection reset; Azurite is also stopped and restarted behind the cut), and the primary
crashes (immediate stop) and restarts. Then:

- every segment PostgreSQL counts as archived (timeline 1, from the first one the repository keeps,
  the base backup's start segment, to pg_stat_archiver.last_archived_wal) is in the repository and
  reads back verified, whole;
- the archive is continuous (the archive model finds no missing segment);
- point-in-time recovery to a position inside the last archived segment shows exactly the ledger
  rows committed before it;
- that recovered copy, promoted, archives timeline 2 into the same repository; a second recovery
  follows timeline 1 then 2 with restore-wal prefetching: its spool is seen holding timeline 1
  segments past the fork, yet the copy shows exactly timeline 2's rows, never timeline 1's later ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shlex
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from wal_fault_support import DelayLine, Ledger, lsn_int, lsn_text

import repo_servers
from pgharness import (
    binaries_for,
    build_archive_module,
    retry,
    rmtree,
    run_pgtool,
    server_writable_dir,
    start_cluster,
)
from pgtool.pg.cluster import LocalCluster
from pgtool.recovery.recovery_config import control_minimums
from pgtool.repo import open_repository
from pgtool.wal.archive import iter_content
from pgtool.wal.chain import ArchiveIndex
from pgtool.wal.names import parse_wal_name, segment_name
from pgtool.wal.repo_archive import RepoWal

PGTOOL = Path(sys.executable).parent / "pgtool"
SEG = 16 * 1024 * 1024
BUCKET = "pgtool-faults"


class Killer:
    """SIGKILLs some of this test's archive-wal processes (found by pid in /proc, by their repository
    URL). The first two archive_command calls seen (tens of ms long now that most only confirm a
    marker) die within 40 ms: PostgreSQL then restarts its archiver, at most every 10 s, so killing
    more calls would only stall archiving. Each uploader running ahead is doomed with probability 1/3
    and dies at a random moment of its first 1.5 s, at once if it is seen uploading several segments;
    the first uploader seen doing that dies anyway. Counts the kills, those that hit uploads ahead and
    those that hit calls (PostgreSQL logs those: exit code 137)."""

    def __init__(self, url: str, port: int) -> None:
        self.url = url.encode()
        self.port = port
        self.kills = 0
        self.ahead_kills = 0
        self.call_kills = 0
        self.rng = random.Random(18)
        self._seen: dict[int, float | None] = {}  # pid -> when to kill it (None: spared)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            now = time.monotonic()
            for pid, uploader in archivers(self.url):
                if pid not in self._seen:
                    # PostgreSQL restarts its archiver after a killed archive_command, at most every
                    # 10 s: two call kills per run prove the point without stalling archiving for good.
                    doomed = self.rng.random() < 1 / 3 if uploader else self.call_kills < 2
                    window = (0.05, 1.5) if uploader else (0.0, 0.04)
                    self._seen[pid] = now + self.rng.uniform(*window) if doomed else None
                when = self._seen[pid]
                ahead = uploader and uploading_ahead(pid, self.port)
                # The first uploader seen uploading several segments dies whatever its lot: a kill among
                # the uploads running ahead must happen in every run, not only when the dice fall so.
                if when is None and not (ahead and self.ahead_kills == 0):
                    continue
                if when is not None and now < when and not ahead:
                    continue
                self._seen[pid] = None
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                self.kills += 1
                self.ahead_kills += ahead
                self.call_kills += not uploader


def archivers(url: bytes) -> list[tuple[int, bool]]:
    """(pid, is the uploader running ahead) of this test's archive-wal processes."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        # archive_command's calls, and the uploader running ahead that one of them started
        uploader = b"pgtool.wal.repo_ahead" in cmdline
        if (b"archive-wal" in cmdline or uploader) and url in cmdline:
            found.append((int(entry), uploader))
    return found


def uploading_ahead(pid: int, port: int) -> bool:
    """Whether the process has two or more connections open to the store (`port`) right now: only the
    uploader running ahead (`pgtool.wal.repo_ahead`) uploads several segments at once; an archive-wal
    call uploads its own segment only."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    inodes = set()
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    if len(inodes) < 2:
        return False
    to_store = 0
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = row.split()
        # remote address 0100007F:PORT, state 01 = established
        if fields[3] == "01" and int(fields[2].split(":")[1], 16) == port and fields[9] in inodes:
            to_store += 1
    return to_store >= 2


class Switcher:
    """Closes the current segment every 0.05 s while fewer than BACKLOG segments wait for the archiver:
    a backlog forms whatever the machine's speed (calls that only confirm a marker keep up with a
    slower pace, and nothing would then be uploaded ahead), without one that takes the rest of the
    test to drain."""

    BACKLOG = 12

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        status = self.cluster.data_dir / "pg_wal" / "archive_status"
        try:
            with self.cluster.connect(pin="off") as conn:
                conn.autocommit = True
                while not self._stop.wait(0.05):
                    if sum(n.endswith(".ready") for n in os.listdir(status)) < self.BACKLOG:
                        conn.execute("SELECT pg_switch_wal()")
        except Exception:
            return  # the crash restart ended this connection; start() opens another


def pgbench(cluster: LocalCluster, *args: str) -> subprocess.Popen[bytes]:
    argv = [binaries_for(15).path("pgbench"), "-h", str(cluster.socket_dir), "-p", str(cluster.port)]
    return subprocess.Popen(
        [*argv, "-U", "postgres", *args, "postgres"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def archiver(cluster: LocalCluster) -> tuple[str | None, int, int]:
    with cluster.connect(pin="off") as conn:
        row = conn.execute("SELECT last_archived_wal, archived_count, failed_count FROM pg_stat_archiver")
        return row.fetchone()


def make_link(kind: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """(kind, server, line, url): a store of the test's own, reached by the primary, pgtool and the
    recovered copies only through a 20 ms round-trip DelayLine (the server's environment)."""
    server = repo_servers.start_server(kind, tmp_path / "server")
    request.addfinalizer(server.stop)
    server.make_bucket(BUCKET)
    line = DelayLine(server.port, delay=0.010)
    request.addfinalizer(line.close)
    for key, value in server.env(**line.endpoint_env(kind, repo_servers.AZ_ACCOUNT)).items():
        if key.startswith(("AWS_", "AZURE_")):
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("PGTOOL_REPO_KEY_FILE", raising=False)
    return kind, server, line, f"{'s3' if kind == 's3' else 'azure'}://{BUCKET}/wal-faults"


@pytest.fixture(params=["s3", "azure"])
def long_link(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    return make_link(request.param, request, tmp_path, monkeypatch)


@pytest.fixture
def s3_link(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    return make_link("s3", request, tmp_path, monkeypatch)


def test_killed_archivers_a_dead_store_and_a_crash_lose_nothing(long_link):
    lose_nothing(*long_link, module=None)


def test_the_archive_module_under_the_same_faults_loses_nothing(s3_link):
    """The same faults with archive_library = pgtool_archive: uploaders killed while they answer the
    module (their sockets stay behind, refusing), the store cut mid-batch, the primary crashed."""
    work = server_writable_dir("pgtool-wal-faults-module-")
    try:
        (work / "lib").mkdir()
        (work / "lib").chmod(0o755)
        lose_nothing(*s3_link, module=build_archive_module(15, work / "lib"))
    finally:
        rmtree(work)


def lose_nothing(kind: str, server: Any, line: DelayLine, url: str, module: Path | None) -> None:
    work = server_writable_dir("pgtool-wal-faults-")
    command = f"{PGTOOL} archive-wal %p %f --repo {shlex.quote(url)}"  # --ahead: 8 by default here
    settings = {"archive_mode": "on", "archive_command": command, "wal_level": "replica"}
    if module is not None:
        settings.update(archive_command="", archive_library=str(module))
        settings["pgtool_archive.command"] = command
    settings["synchronous_commit"] = "on"  # a committed ledger row survives the crash restart
    primary = start_cluster(15, settings=settings)
    copies: list[LocalCluster] = []
    try:
        result = run_pgtool("basebackup", "--dsn", primary.dsn(), "--repo", url)
        assert result.returncode == 0, result.stderr
        ledger = Ledger(lambda: primary.connect(pin="off"))
        assert pgbench(primary, "-i", "-s", "3", "-q").wait(timeout=300) == 0
        mid = chaos(primary, kind, server, line, url, ledger)
        last = archiver(primary)[0]
        assert last is not None

        # The faults really happened: pgtool's connections were reset by the outage (its retries, 60 s
        # by default, may ride out 8 s), PostgreSQL saw archive_command die of the kills (its archiver
        # exits on them, so pg_stat_archiver does not count them), and pgtool uploaded ahead between.
        assert line.cuts >= 1 and line.reset + line.refused >= 1, vars(line)
        killer = mid["killer"]
        log = primary.log_file.read_text()
        if module is None:
            assert killer.kills >= 3 and killer.ahead_kills >= 1 and killer.call_kills >= 1, vars(killer)
            # PostgreSQL logs a killed call as the shell's "exit code 137", or as "terminated by signal
            # 9" when the process killed was the shell itself (its command line names archive-wal too)
            assert "exit code 137" in log or "terminated by signal 9" in log, log[-3000:]
            assert '"result": "archived ahead"' in log
        else:
            # Calls are rare with the module (after an uploader died, or none answered): the kills that
            # matter hit uploaders, some while they answered the module; the module confirmed segments.
            assert killer.kills >= 2 and killer.ahead_kills >= 1, vars(killer)
            ends = [json.loads(t[t.index("{") :]) for t in log.splitlines() if '"uploader finished"' in t]
            assert sum(e.get("confirmed_for_module", 0) for e in ends) >= 10, ends

        # Every segment PostgreSQL counts as archived is in the repository and intact (read verified
        # straight from the server: the link's delay is not what this checks).
        direct = RepoWal(open_repository(url, environ=server.env()))
        files = direct.list_archive()
        stored = {f.name: f for f in files}
        final = parse_wal_name(last).segno(SEG)
        # The first segment kept: basebackup --repo prunes the WAL before its backup's start segment.
        backups = [n for n in stored if n.endswith(".backup")]
        assert len(backups) == 1, backups
        first = parse_wal_name(backups[0][:24]).segno(SEG)
        assert first >= 1 and min(stored) == segment_name(1, first, SEG)
        wanted = [segment_name(1, n, SEG) for n in range(first, final + 1)]
        assert [n for n in wanted if n not in stored] == []
        with ThreadPoolExecutor(8) as pool:
            sizes = list(pool.map(lambda n: sum(len(c) for c in iter_content(stored[n])), wanted))
        assert sizes == [SEG] * len(wanted)
        index = ArchiveIndex(direct.display, SEG, files)
        assert index.missing(index.path(1), first, final) == []

        # PITR to the last point archived at the moment of reading (rows after it were committed
        # and archived later, so the target really cuts the ledger).
        end = (parse_wal_name(mid["last"]).segno(SEG) + 1) * SEG
        k = ledger.last_before(end - (1 << 20))
        assert 0 < k < max(ledger.after), (k, max(ledger.after))
        pitr = work / "pitr" / "data"
        result = run_pgtool(
            "recover", "--repo", url, "--pgdata", str(pitr), "--target-lsn", lsn_text(ledger.after[k])
        )
        assert result.returncode == 0, result.stderr
        # The promoted copy archives timeline 2 into the same repository (issue 18's timeline switch).
        copy = adopt(pitr, {"archive_mode": "on", "archive_command": command})
        copies.append(copy)
        copy.start()
        copy.wait_until_ready(600, primary=True)
        with copy.connect(pin="off") as conn:
            rows = [r[0] for r in conn.execute("SELECT i FROM ledger ORDER BY i")]
        assert rows == list(range(1, k + 1))
        timeline_switch(copy, url, server, work, k, ledger, copies)
    finally:
        for c in copies:
            c.cleanup()
        primary.cleanup()
        rmtree(work)


def chaos(
    primary: LocalCluster, kind: str, server: Any, line: DelayLine, url: str, ledger: Ledger
) -> dict[str, Any]:
    """Load, kills, a store outage mid-batch and a crash restart; returns the archiver's last segment
    read while the ledger was still writing, and the killer."""
    killer = Killer(url, line.port)
    switcher = Switcher(primary)
    bench = pgbench(primary, "-c", "2", "-T", "60", "-R", "100", "-n")
    ledger.start()
    switcher.start()
    killer.start()
    try:
        start_count = archiver(primary)[1]
        retry(lambda: archiver(primary)[1] >= start_count + 15, timeout=180)
        # The store goes away in the middle of a batch: while followers are being uploaded ahead.
        retry(
            lambda: any(uploading_ahead(p, line.port) for p, _uploader in archivers(url.encode())),
            timeout=120,
            interval=0.01,
        )
        line.cut()
        if kind == "azure":
            server.stop_gracefully()  # Azurite keeps its data across a graceful restart (moto would not)
            server.start()
        time.sleep(8)  # beyond pgtool's retry budget: archive-wal fails, PostgreSQL keeps the WAL
        line.heal()
        retry(lambda: archiver(primary)[1] >= start_count + 25, timeout=180)
        # The primary crashes and restarts in the middle of it all.
        ledger.stop()
        switcher.stop()
        bench.kill()
        bench.wait()
        primary.stop("immediate")
        primary.start()
        with primary.connect(pin="off") as conn:
            ledger.restarted(lsn_int(conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0]))
        bench = pgbench(primary, "-c", "2", "-T", "60", "-R", "100", "-n")
        ledger.start()
        switcher.start()
        count = archiver(primary)[1]
        retry(lambda: archiver(primary)[1] >= count + 10, timeout=180)
        last = archiver(primary)[0]
        time.sleep(3)  # more ledger rows, committed after that segment
    finally:
        killer.stop()
        ledger.stop()
        switcher.stop()
        bench.kill()
        bench.wait()
    # Without faults now, the archiver catches up with a last switch.
    with primary.connect(pin="off") as conn:
        conn.autocommit = True
        conn.execute("INSERT INTO ledger VALUES (-1, 'end')")
        closed = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]
    retry(lambda: (archiver(primary)[0] or "") >= closed, timeout=300)
    return {"last": last, "killer": killer}


def adopt(pgdata: Path, settings: dict[str, str] | None = None) -> LocalCluster:
    """The recovered copy in `pgdata` as a cluster on a port of its own (the primary still runs)."""
    tools = binaries_for(15)
    minimums = control_minimums(tools.path("pg_controldata"), pgdata)
    return LocalCluster(tools, pgdata.parent, data_dir=pgdata, settings={**minimums, **(settings or {})})


def timeline_switch(
    copy: LocalCluster, url: str, server: Any, work: Path, k: int, ledger: Ledger, copies: list[LocalCluster]
) -> None:
    """Timeline 2 (the promoted copy) archives into the repository beside timeline 1's later segments;
    a second recovery with prefetch follows it and never serves timeline 1's copies past the fork."""
    with copy.connect(pin="off") as conn:
        conn.autocommit = True
        tli = conn.execute("SELECT timeline_id FROM pg_control_checkpoint()").fetchone()[0]
        assert tli == 2
        for i in range(3):
            conn.execute(
                "INSERT INTO ledger SELECT g, 'tl2' FROM generate_series(%s::int, %s::int) g",
                (-1000 - 10 * i, -991 - 10 * i),
            )
            conn.execute("SELECT pg_switch_wal()")
        conn.execute("CHECKPOINT")
        closed = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]
    retry(lambda: (archiver(copy)[0] or "") >= closed, timeout=300)
    copy.stop()
    repo = RepoWal(open_repository(url, environ=server.env()))
    names = {f.name for f in repo.list_archive()}
    assert "00000002.history" in names
    fork = min(parse_wal_name(n).segno(SEG) for n in names if n.startswith("00000002") and len(n) == 24)
    # timeline 1 holds its own, different segments from the fork on: serving one of them would be wrong
    assert segment_name(1, fork + 1, SEG) in names and segment_name(2, fork + 1, SEG) in names

    again = work / "again" / "data"
    result = run_pgtool("recover", "--repo", url, "--pgdata", str(again))
    assert result.returncode == 0, result.stderr
    spool = again / "pg_wal" / ".pgtool-prefetch"
    seen: set[str] = set()
    watching = threading.Event()

    def watch() -> None:
        while not watching.is_set():
            with contextlib.suppress(OSError):
                seen.update(os.listdir(spool))
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    second = adopt(again)
    copies.append(second)
    try:
        second.start()
        second.wait_until_ready(600, primary=True)
    finally:
        watching.set()
        watcher.join()
    with second.connect(pin="off") as conn:
        rows = [r[0] for r in conn.execute("SELECT i FROM ledger WHERE i > 0 ORDER BY i")]
        tl2 = conn.execute("SELECT count(*) FROM ledger WHERE pad = 'tl2'").fetchone()[0]
    assert rows == list(range(1, k + 1)) and tl2 == 30
    stale = [
        n for n in seen if n.startswith("00000001") and len(n) == 24 and parse_wal_name(n).segno(SEG) >= fork
    ]
    assert stale, sorted(seen)  # the spool did hold timeline 1 past the fork, and served none of it
    log = second.log_file.read_text()
    assert f".pgtool-prefetch/{segment_name(2, fork + 1, SEG)}" in log  # timeline 2 came prefetched
    retry(lambda: not spool.exists(), timeout=30)
