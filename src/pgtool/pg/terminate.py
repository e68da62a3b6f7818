"""SIGTERM as an exception, so finally-blocks (drop the throwaway database, delete a partial dump) run.

Kubernetes stops a pod with SIGTERM; Python's default action ends the process without unwinding, which
would leave a half-restored `pgtool_verify_*` database, a `.partial` dump or a file holding a password
behind. Inside `sigterm_raises()` (the runner installs it around every command) the first SIGTERM (or
SIGINT) forwards the signal to every child pgtool started (`pgtool.pg.command`'s registry: pg_dump and
pg_restore run from worker threads, where no handler can be installed), removes the secret files the
children no longer need, sets STOP and raises `Terminated` in the main thread; further signals only
repeat the forwarding, so the cleanup itself is not interrupted.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from pgtool.obs.logging import get_logger
from pgtool.pg import secretfile
from pgtool.pg.command import Terminated, signal_children

__all__ = ["STOP", "Terminated", "sigterm_raises"]

STOP = threading.Event()


def _handler(signum: int, _frame: Any) -> None:
    signal_children(signal.SIGTERM)
    secretfile.remove_all()
    if STOP.is_set():
        return
    STOP.set()
    get_logger().warning("signal received, cleaning up", signal=signal.Signals(signum).name)
    raise Terminated


@contextlib.contextmanager
def sigterm_raises() -> Iterator[threading.Event]:
    """Within the block, SIGTERM/SIGINT reach the children, set STOP and raise Terminated once.

    Yields the STOP event worker threads poll before starting more work. Main thread only; elsewhere,
    or inside an enclosing `sigterm_raises()`, it only yields STOP.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is _handler
    ):
        yield STOP
        return
    STOP.clear()
    previous = {s: signal.signal(s, _handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield STOP
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
