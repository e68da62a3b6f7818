"""Real network faults between pgtool and a storage server, for the repository fault tests.

- `NetNamespace`: a private network namespace (its own loopback, nothing else) where a storage server
  and a pgtool client run, and where the kernel degrades the link: a token-bucket rate limit (tc tbf)
  and random packet loss (an nftables `numgen random` drop rule), or a black hole (every packet
  dropped). netem would also add a fixed delay, but this machine's kernel is built without it
  (CONFIG_NET_SCH_NETEM is not set, and it has no loadable modules), so the delay comes from
  `FaultyProxy` instead.
- `FaultyProxy`: a TCP proxy between client and server that delays every exchange and can cut a
  connection at chosen moments: after the request reached the server but before its answer reached
  the client (the "answer lost" fault a conditional create must survive).

Both need root (namespaces, tc, nft); the test machines and CI run as root. Nothing here mocks a
server: the bytes cross real sockets and the faults happen to real TCP connections.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

_CLONE_NEWNET = 0x40000000
T = TypeVar("T")


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: no orphan holder


class NetNamespace:
    """A network namespace held open by a sleeping process; it vanishes with its last process."""

    def __init__(self) -> None:
        for tool in ("unshare", "nsenter", "tc", "nft"):
            if shutil.which(tool) is None:
                pytest.fail(f"{tool} is not installed: run bash scripts/setup.sh (iproute2, nftables)")
        self.holder = subprocess.Popen(
            ["unshare", "--net", "sleep", "infinity"], preexec_fn=_die_with_parent, start_new_session=True
        )
        self.path = f"/proc/{self.holder.pid}/ns/net"
        own = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + 10
        while os.readlink(self.path) == own:  # until unshare has exec'd sleep in the new namespace
            assert self.holder.poll() is None, "unshare --net failed (needs root)"
            assert time.monotonic() < deadline, "unshare --net did not create a namespace"
            time.sleep(0.01)
        # A realistic MTU: loopback's 64 KiB packets would make each lost packet a lost part.
        self.run("ip", "link", "set", "lo", "up", "mtu", "1500")
        self.run("nft", "add", "table", "inet", "pgtool_fault")
        self.run(
            "nft",
            "add chain inet pgtool_fault in { type filter hook input priority 0 ; policy accept ; }",
        )

    def wrap(self, argv: list[str]) -> list[str]:
        """`argv` to run inside the namespace."""
        return ["nsenter", f"--net={self.path}", *argv]

    def run(self, *argv: str) -> None:
        subprocess.run(self.wrap(list(argv)), check=True, capture_output=True, timeout=30)

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` in a thread that joined the namespace (setns is per thread), for sockets the test
        process itself opens: waiting for a server's port, creating a bucket."""
        box: dict[str, object] = {}

        def target() -> None:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                if ctypes.CDLL(None, use_errno=True).setns(fd, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)
            try:
                box["value"] = fn()
            except BaseException as exc:  # re-raised in the caller's thread
                box["error"] = exc

        thread = threading.Thread(target=target)
        thread.start()
        thread.join()
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        return box["value"]  # type: ignore[return-value]

    def degrade(self, *, loss_percent: int, rate: str | None = None) -> None:
        """Drop `loss_percent`% of TCP packets at random (100: a black hole) and, with `rate`
        ("40mbit"), shape the link through a token bucket."""
        self.heal()
        if rate:
            tbf = ["tbf", "rate", rate, "burst", "64kb", "latency", "1s"]
            self.run("tc", "qdisc", "add", "dev", "lo", "root", *tbf)
        if loss_percent >= 100:
            self.run("nft", "add rule inet pgtool_fault in meta l4proto tcp counter drop")
        elif loss_percent > 0:
            rule = f"meta l4proto tcp numgen random mod 100 < {loss_percent} counter drop"
            self.run("nft", f"add rule inet pgtool_fault in {rule}")

    def dropped(self) -> int:
        """Packets the fault rules have dropped so far: proof that the link really was degraded."""
        listing = subprocess.run(
            self.wrap(["nft", "list", "chain", "inet", "pgtool_fault", "in"]),
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        return sum(int(m) for m in re.findall(r"counter packets (\d+)", listing))

    def heal(self) -> None:
        self.run("nft", "flush", "chain", "inet", "pgtool_fault", "in")
        # no check: deleting the root qdisc fails when none was added
        argv = self.wrap(["tc", "qdisc", "del", "dev", "lo", "root"])
        subprocess.run(argv, capture_output=True, timeout=30)

    def close(self) -> None:
        if self.holder.poll() is None:
            self.holder.kill()
            self.holder.wait()


class FaultyProxy:
    """A TCP proxy on 127.0.0.1 in front of a server: every chunk waits `delay` seconds in each
    direction (a long link), and `lose_answer(marker, times)` arms a fault: the next `times` requests
    whose bytes contain `marker` reach the server, but the connection is reset before the server's
    answer reaches the client, as when a link dies between request and response."""

    def __init__(self, target_port: int, *, delay: float = 0.0) -> None:
        self.target_port = target_port
        self.delay = delay
        self._marker = b""
        self._times = 0
        self.answers_lost = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def lose_answer(self, marker: bytes, times: int = 1) -> None:
        with self._lock:
            self._marker, self._times = marker, times

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            doomed = threading.Event()  # a marked request went up: its answer must not come back
            threading.Thread(target=self._pump_up, args=(client, upstream, doomed), daemon=True).start()
            threading.Thread(target=self._pump_down, args=(upstream, client, doomed), daemon=True).start()

    def _pump_up(self, src: socket.socket, dst: socket.socket, doomed: threading.Event) -> None:
        try:
            while data := src.recv(65536):
                with self._lock:
                    if self._times and self._marker and self._marker in data:
                        self._times -= 1
                        doomed.set()
                if self.delay:
                    time.sleep(self.delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _shut(dst)

    def _pump_down(self, src: socket.socket, dst: socket.socket, doomed: threading.Event) -> None:
        try:
            while data := src.recv(65536):
                if doomed.is_set():
                    # The server answered the marked request: reset the client's connection instead.
                    with self._lock:
                        self.answers_lost += 1
                    # SO_LINGER 0: close sends a reset. shutdown(SHUT_RD) first wakes the other
                    # pump, blocked in recv on this socket, so that close really releases it.
                    dst.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    dst.shutdown(socket.SHUT_RD)
                    dst.close()
                    src.close()
                    return
                if self.delay:
                    time.sleep(self.delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _shut(dst)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
