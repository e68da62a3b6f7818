"""The one wrapper through which pgtool runs external binaries (pg_dump, pg_basebackup, initdb, ...).

- argv lists only, never a shell;
- secrets never on argv: `libpq_args()` moves a DSN's password and sslpassword into a 0600 file
  (`pgtool.pg.secretfile`) for the child's lifetime;
- one registry of the children started (`start`), so a signal reaches each of them whichever thread
  started it (`signal_children`, called by `pgtool.pg.terminate`);
- stderr streamed to the log line by line (redacted), its tail kept for the error message;
- SIGTERM/SIGINT received by pgtool are forwarded to the child, so a Kubernetes pod stop lets
  pg_dump/pg_basebackup end cleanly and our cleanup still runs;
- optionally run as an unprivileged user (postgres refuses root).

The one process pgtool starts to outlive itself, archive-wal's uploader running ahead, starts through
`pgtool.pg.detached` instead: stdlib only (the WAL bundle carries it), and outside the registry by design.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pgtool.config import redact_dsn
from pgtool.errors import BinaryNotFoundError, ExternalCommandError
from pgtool.obs.logging import get_logger

DEVNULL = subprocess.DEVNULL  # for start(stdin=..., stdout=...): callers need not import subprocess


@dataclass
class CommandResult:
    argv: list[str]
    returncode: int
    stdout: str | None
    stderr_tail: str


def run_as_prefix(user: str | None) -> list[str]:
    """argv prefix that runs a command as `user` (when we are root), else nothing."""
    if user is None or os.geteuid() != 0:
        return []
    return ["runuser", "-u", user, "--"]


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdout: IO[Any] | int | None = subprocess.DEVNULL,
    capture_stdout: bool = False,
    stdin: IO[Any] | int | None = subprocess.DEVNULL,
    check: bool = True,
    ok_codes: Sequence[int] = (0,),
    run_as: str | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
    log_stderr_level: str = "info",
    what: str | None = None,
    on_progress: Callable[[str], bool] | None = None,
) -> CommandResult:
    """Run `argv` and wait for it.

    env: variables added to (not replacing) the current environment.
    stdout: a file object or fd the child writes to; ignored when capture_stdout is true.
    check: raise ExternalCommandError unless the return code is in ok_codes.
    run_as: drop to this user through runuser when pgtool runs as root.
    what: a short description for messages (default: the binary's name).
    on_progress: called (from a reader thread) with each stderr line; a line it returns True for
    is progress (`--verbose` output), logged at debug and kept out of the error message.
    """
    argv = [str(a) for a in argv]
    name = what or Path(argv[0]).name
    log = get_logger().bind(binary=name)
    proc = start(
        run_as_prefix(run_as) + argv,
        env=env,
        what=name,
        stdin=stdin,
        stdout=subprocess.PIPE if capture_stdout else stdout,
        stderr=subprocess.PIPE,
        cwd=cwd,
        text=False,
    )

    tail: deque[str] = deque(maxlen=20)
    emit = getattr(log, log_stderr_level)

    def pump_stderr() -> None:
        assert proc.stderr is not None
        for raw in iter(proc.stderr.readline, b""):
            line = redact_dsn(raw.decode("utf-8", "replace").rstrip())
            if not line:
                continue
            if on_progress is not None and _is_progress(on_progress, line):
                log.debug("progress", line=line)
                continue
            tail.append(line)
            emit("stderr", line=line)

    reader = threading.Thread(target=pump_stderr, daemon=True)
    reader.start()
    out_chunks: list[bytes] = []
    out_reader = None
    if capture_stdout:
        assert proc.stdout is not None
        pipe = proc.stdout
        out_reader = threading.Thread(target=lambda: out_chunks.append(pipe.read()), daemon=True)
        out_reader.start()

    with _forward_signals(proc):
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop(proc)
            reader.join(timeout=5)
            raise ExternalCommandError(
                f"{name} did not finish within {timeout:.0f}s and was stopped",
                returncode=-1,
                stderr_tail="\n".join(tail),
            ) from None
    reader.join(timeout=10)
    if out_reader is not None:
        out_reader.join(timeout=10)
    result = CommandResult(
        argv=argv,
        returncode=returncode,
        stdout=b"".join(out_chunks).decode("utf-8", "replace") if capture_stdout else None,
        stderr_tail="\n".join(tail),
    )
    if check and returncode not in ok_codes:
        # The first "x: error: ..." line says what went wrong: PostgreSQL's tools follow it with
        # "x: detail: ..." lines, and parallel pg_restore with "a worker process died unexpectedly".
        errors = [line for line in tail if "error:" in line]
        cause = errors[0] if errors else tail[-1] if tail else "no error output"
        raise ExternalCommandError(
            f"{name} failed (exit {returncode}): {cause}",
            returncode=returncode,
            stderr_tail=result.stderr_tail,
        )
    return result


class Child(subprocess.Popen[Any]):
    """A started child: registered while it runs, unregistered once reaped (wait/poll saw it end)."""

    def poll(self) -> int | None:
        code = super().poll()
        if code is not None:
            _unregister(self)
        return code

    def wait(self, timeout: float | None = None) -> int:
        code = super().wait(timeout)
        _unregister(self)
        return code


_CHILDREN: set[Child] = set()
_CHILDREN_LOCK = threading.RLock()  # re-entered by a signal handler interrupting start()


def _unregister(proc: Child) -> None:
    with _CHILDREN_LOCK:
        _CHILDREN.discard(proc)


def children() -> list[subprocess.Popen[Any]]:
    """The children started through this module that have not been reaped yet."""
    with _CHILDREN_LOCK:
        return list(_CHILDREN)


def signal_children(signum: int = signal.SIGTERM) -> None:
    """Send `signum` to every registered child still running (from any thread, a handler included)."""
    for proc in children():
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                proc.send_signal(signum)


def start(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, what: str | None = None, **popen: Any
) -> subprocess.Popen[Any]:
    """Start `argv` (env added to the current environment); a missing binary is BinaryNotFoundError.

    Every child pgtool starts goes through here and is registered until reaped, so a signal that
    ends the run reaches it (`signal_children`) whichever thread started it; `run` starts through here.
    """
    argv = [str(a) for a in argv]
    name = what or Path(argv[0]).name
    get_logger().debug("running", binary=name, argv=redact_dsn(" ".join(argv)))
    try:
        # Registered under the lock, so a signal handler never misses a child it could have seen.
        with _CHILDREN_LOCK:
            proc = Child(argv, env={**os.environ, **(env or {})}, **popen)
            _CHILDREN.add(proc)
        return proc
    except FileNotFoundError as exc:
        raise BinaryNotFoundError(
            f"{name}: executable not found ({exc.filename})",
            hint="install the PostgreSQL client tools or pass --pg-bindir",
        ) from None
    except PermissionError as exc:
        raise BinaryNotFoundError(f"{name}: not executable ({exc.filename})") from None


def stop(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """SIGTERM a child, SIGKILL it if it is still there after `grace` seconds, and reap it."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _is_progress(on_progress: Callable[[str], bool], line: str) -> bool:
    # The reader thread must keep draining stderr whatever the callback does, or the child blocks.
    try:
        return bool(on_progress(line))
    except Exception as exc:
        get_logger().debug("progress callback failed", error=f"{type(exc).__name__}: {exc}")
        return False


class Terminated(KeyboardInterrupt):
    """The run received SIGTERM/SIGINT (a KeyboardInterrupt, so the runner exits 130 "interrupted")."""


@dataclass
class CaughtSignals:
    """What `catch_signals` saw: the signals received, in order, and the handlers it replaced."""

    received: list[int] = field(default_factory=list)
    previous: dict[signal.Signals, Any] = field(default_factory=dict)


@contextlib.contextmanager
def catch_signals(on_signal: Callable[[int], None] | None = None) -> Iterator[CaughtSignals]:
    """In the main thread, SIGTERM/SIGINT are recorded (and passed to `on_signal`) instead of acting
    while the block runs; the previous handlers are back afterwards. The caller decides, from what was
    caught, how to act on them. In another thread a handler cannot be installed: nothing is caught.
    """
    caught = CaughtSignals()
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return

    def handler(signum: int, _frame: Any) -> None:
        caught.received.append(signum)
        if on_signal is not None:
            on_signal(signum)

    caught.previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield caught
    finally:
        for s, h in caught.previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def _forward_signals(proc: subprocess.Popen[bytes]) -> Iterator[None]:
    """In the main thread, forward SIGTERM/SIGINT to the child and re-deliver once it has ended.

    Waiting for the child first lets the caller's cleanup (delete a partial file) find it gone. In
    another thread a handler cannot be installed: the main thread's (`pgtool.pg.terminate`,
    installed for every command by the runner) reaches the child through the registry.
    """

    def forward(signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    with catch_signals(forward) as caught:
        yield
    if caught.received:
        first = signal.Signals(caught.received[0])
        if callable(caught.previous[first]):
            os.kill(os.getpid(), first)  # the caller's handler decides
        elif caught.previous[first] != signal.SIG_IGN:
            # Default action: an exception rather than a sudden death, so finally-blocks (secret
            # files, partial output) still run.
            raise Terminated


@contextlib.contextmanager
def libpq_args(dsn: str, **overrides: str) -> Iterator[tuple[str, dict[str, str]]]:
    """Split `dsn` into (conninfo without secrets, env) for a libpq client binary.

    `overrides` (dbname, application_name, ...) are set in the conninfo, rebuilt from libpq's own
    reading of the DSN (`pgtool.pg.conninfo.parse`; a malformed DSN is UsageError). `password` and
    `sslpassword` go to a 0600 file in a private directory (`pgtool.pg.secretfile`) removed
    afterwards, so the conninfo is safe on argv and in logs. PGCONNECT_TIMEOUT is 10 s unless the DSN
    or the environment says otherwise: a CronJob must not hang on a dead host.
    """
    from psycopg.conninfo import make_conninfo

    from pgtool.pg import conninfo, secretfile

    env = {} if os.environ.get("PGCONNECT_TIMEOUT") else {"PGCONNECT_TIMEOUT": "10"}
    params = conninfo.parse(dsn)
    secrets = {k: params.pop(k) for k in secretfile.SECRET_KEYS if k in params}
    params.update(overrides)
    with secretfile.for_client(params, secrets) as (extra_params, extra_env):
        yield make_conninfo(**{**params, **extra_params}), {**env, **extra_env}
