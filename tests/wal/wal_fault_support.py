"""Support for the WAL fault tests and the WAL benchmarks (issue 18): a long link to a real store, and a
ledger of committed rows whose commit positions are known.

- `DelayLine`: a TCP proxy on 127.0.0.1 in front of a storage server that adds a fixed one-way delay to
  every byte in both directions (20 ms round trip with delay=0.010), pipelined: each chunk leaves
  `delay` after it arrived, so the link has latency but no bandwidth cap. (tests/repo/repo_links.py's
  FaultyProxy sleeps before forwarding each 64 KiB chunk, which also caps a connection near
  64 KiB/delay: right for its faults, wrong for measuring a parallel archiver over a long link.) This
  kernel has no netem, so the delay comes from here. `cut()` makes the store unreachable at once:
  every open connection is reset and new ones are reset on accept, as when the store's host dies
  mid-batch; `heal()` lets traffic through again.
- `Ledger`: one connection inserting rows 1, 2, 3 ... one committed transaction each, recording after
  each commit the WAL insert position. Recovery to target LSN `after[k]` shows exactly rows 1..k: row
  k's commit record ends before that position, and row k+1's transaction writes its heap insert
  before its commit record, so its commit is never the first record at or past the target (the only
  one an inclusive LSN target applies beyond it).

No pytest here: benchmarks/ import this module too.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any


class DelayLine:
    def __init__(self, target_port: int, *, delay: float = 0.010) -> None:
        self.target_port = target_port
        self.delay = delay
        self.down = False
        self.cuts = 0
        self.connections = 0
        self.refused = 0  # connections reset while the line was cut: clients really met the outage
        self.reset = 0
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def endpoint_env(self, kind: str, account: str) -> dict[str, str]:
        """The endpoint variable that sends a store's clients through this line."""
        if kind == "s3":
            return {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.port}"}
        return {"AZURE_STORAGE_ENDPOINT": f"http://127.0.0.1:{self.port}/{account}"}

    def cut(self) -> None:
        with self._lock:
            self.down = True
            self.cuts += 1
            doomed = list(self._open)
            self.reset += len(doomed) // 2  # two sockets per connection
        for sock in doomed:
            _reset(sock)

    def heal(self) -> None:
        with self._lock:
            self.down = False

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.cut()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.down:
                self.refused += 1
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)  # the server itself is down: the client sees a reset, as from a dead host
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._open.update((client, upstream))
                self.connections += 1
            for src, dst in ((client, upstream), (upstream, client)):
                _Pipe(self, src, dst).start()

    def _forget(self, *socks: socket.socket) -> None:
        with self._lock:
            for sock in socks:
                self._open.discard(sock)


class _Pipe:
    """One direction of one connection: a reader stamping chunks, a writer sending each when due."""

    def __init__(self, line: DelayLine, src: socket.socket, dst: socket.socket) -> None:
        self.line, self.src, self.dst = line, src, dst
        self.queue: list[tuple[float, int, bytes]] = []
        self.cond = threading.Condition()
        self.seq = 0
        self.eof = False

    def start(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._write, daemon=True).start()

    def _read(self) -> None:
        try:
            while data := self.src.recv(262144):
                with self.cond:
                    heapq.heappush(self.queue, (time.monotonic() + self.line.delay, self.seq, data))
                    self.seq += 1
                    self.cond.notify()
        except OSError:
            pass
        with self.cond:
            self.eof = True
            self.cond.notify()

    def _write(self) -> None:
        try:
            while True:
                with self.cond:
                    while not self.queue and not self.eof:
                        self.cond.wait()
                    if not self.queue:
                        break
                    due, _, data = self.queue[0]
                    wait = due - time.monotonic()
                    if wait > 0:
                        self.cond.wait(wait)
                        continue
                    heapq.heappop(self.queue)
                self.dst.sendall(data)
            with contextlib.suppress(OSError):
                self.dst.shutdown(socket.SHUT_WR)
        except OSError:
            _reset(self.src)
            _reset(self.dst)
        self.line._forget(self.src)


def _reset(sock: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0), after waking any thread blocked reading it."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


def lsn_int(text: str) -> int:
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def lsn_text(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


class Ledger:
    """Rows 1, 2, 3 ... of table `ledger`, one committed transaction each, written by a thread through
    `connect()`; after[i] is the WAL insert position read after row i committed."""

    def __init__(self, connect: Any) -> None:
        self.connect = connect
        self.after: dict[int, int] = {}
        self.next = 1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        with connect() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS ledger (i int PRIMARY KEY, pad text)")

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            with self.connect() as conn:
                conn.autocommit = True
                while not self._stop.is_set():
                    conn.execute("INSERT INTO ledger VALUES (%s, repeat('x', 200))", (self.next,))
                    lsn = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0]
                    self.after[self.next] = lsn_int(lsn)
                    self.next += 1
                    time.sleep(0.002)
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def restarted(self, insert_lsn: int) -> None:
        """After a crash restart at `insert_lsn`: positions read before the crash may lie past the WAL
        that crash recovery kept (others' unflushed records), while each row's own commit is within it
        (synchronous_commit on). Capping them keeps `after` ordered like the WAL that survived."""
        self.after = {i: min(lsn, insert_lsn) for i, lsn in self.after.items()}

    def last_before(self, limit: int) -> int:
        """The newest row whose recorded position is at most `limit` (0 when none)."""
        return max((i for i, lsn in self.after.items() if lsn <= limit), default=0)


def uploader_pids(pg_wal: Path) -> list[int]:
    """The pids of the uploaders running ahead (`pgtool.wal.repo_ahead`) for this pg_wal, from /proc."""
    needle = str(pg_wal).encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
                if b"pgtool.wal.repo_ahead" in cmdline and needle in cmdline:
                    found.append(int(entry))
    return found
