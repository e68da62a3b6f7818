"""SIGTERM as an exception, so finally-blocks (drop the throwaway database, delete a partial dump) run.

Kubernetes stops a pod with SIGTERM; Python's default action ends the process without unwinding, which
would leave a half-restored `pgtool_verify_*` database or a `.partial` dump behind. Inside
`sigterm_raises()` the first SIGTERM (or SIGINT) raises `Terminated` in the main thread, after
forwarding the signal to our child processes (pg_dump / pg_restore running from worker threads, where
`pgtool.pg.command.run` cannot forward it); further signals only repeat the forwarding, so the cleanup
itself is not interrupted.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pgtool.obs.logging import get_logger


class Terminated(KeyboardInterrupt):
    """The run received SIGTERM/SIGINT (a KeyboardInterrupt, so the runner exits 130 "interrupted")."""


STOP = threading.Event()


def child_pids() -> list[int]:
    """PIDs of this process's direct children (from /proc)."""
    me = os.getpid()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(me):
            pids.append(int(entry.name))
    return pids


def signal_children(signum: int = signal.SIGTERM) -> None:
    """Send `signum` to every child but psql sessions, whose running statements are cancelled instead."""
    psql = sys.modules.get("pgtool.pg.psql")  # not imported: no session exists
    sessions = psql.session_pids() if psql is not None else set()
    for pid in child_pids():
        if pid not in sessions:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)
    if psql is not None:
        psql.interrupt()


@contextlib.contextmanager
def sigterm_raises() -> Iterator[threading.Event]:
    """Within the block, SIGTERM/SIGINT set STOP, reach the children, and raise Terminated once.

    Yields the STOP event worker threads poll before starting more work. Main thread only; elsewhere
    (or when already installed) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield STOP
        return
    STOP.clear()

    def handler(signum: int, _frame: Any) -> None:
        signal_children(signal.SIGTERM)
        if STOP.is_set():
            return
        STOP.set()
        get_logger().warning("signal received, cleaning up", signal=signal.Signals(signum).name)
        raise Terminated

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield STOP
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
