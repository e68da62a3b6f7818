"""The one wrapper through which pgtool runs external binaries (pg_dump, pg_basebackup, initdb, ...).

- argv lists only, never a shell;
- passwords never on argv: `libpq_args()` moves a DSN's password into a 0600 passfile named by
  PGPASSFILE for the child's lifetime;
- stderr streamed to the log line by line (redacted), its tail kept for the error message;
- SIGTERM/SIGINT received by pgtool are forwarded to the child, so a Kubernetes pod stop lets
  pg_dump/pg_basebackup end cleanly and our cleanup still runs;
- optionally run as an unprivileged user (postgres refuses root).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pgtool.config import redact_dsn
from pgtool.errors import BinaryNotFoundError, ExternalCommandError
from pgtool.obs.logging import get_logger


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


def start(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, what: str | None = None, **popen: Any
) -> subprocess.Popen[Any]:
    """Start `argv` (env added to the current environment); a missing binary is BinaryNotFoundError.

    For a child pgtool talks to while it runs (psql as a session); `run` starts through here too.
    """
    argv = [str(a) for a in argv]
    name = what or Path(argv[0]).name
    get_logger().debug("running", binary=name, argv=redact_dsn(" ".join(argv)))
    try:
        return subprocess.Popen(argv, env={**os.environ, **(env or {})}, **popen)
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


@contextlib.contextmanager
def _forward_signals(proc: subprocess.Popen[bytes]) -> Iterator[None]:
    """Forward SIGTERM/SIGINT to the child while it runs (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum: int, _frame: Any) -> None:
        received.append(signum)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    if received:
        # Re-deliver so the caller's cleanup (finally blocks, KeyboardInterrupt) runs as it would have.
        if received[0] == signal.SIGINT:
            raise KeyboardInterrupt
        os.kill(os.getpid(), received[0])


@contextlib.contextmanager
def libpq_args(dsn: str, **overrides: str) -> Iterator[tuple[str, dict[str, str]]]:
    """Split `dsn` into (conninfo without password, env) for a libpq client binary.

    `overrides` (dbname, application_name, ...) are set in the conninfo. The password, if any,
    goes to a 0600 passfile referenced by PGPASSFILE, deleted afterwards; the conninfo is safe to put
    on argv. A plain DSN is extended as it is (`pgtool.pg.conninfo`), so a binary can start before
    psycopg is loaded; any other goes through libpq's parser. PGCONNECT_TIMEOUT is 10 s unless the
    DSN or the environment says otherwise: a CronJob must not hang on a dead host.
    """
    from pgtool.pg import conninfo as plain

    env = {} if os.environ.get("PGCONNECT_TIMEOUT") else {"PGCONNECT_TIMEOUT": "10"}
    extended = plain.extend(dsn, **overrides)
    if extended is not None:
        yield extended, env
        return
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        params = conninfo_to_dict(dsn)
    except Exception as exc:  # psycopg.ProgrammingError: malformed DSN
        from pgtool.errors import UsageError

        raise UsageError(f"invalid DSN {redact_dsn(dsn)!r}: {redact_dsn(str(exc))}") from None
    password = params.pop("password", None)
    params.update(overrides)
    conninfo = make_conninfo(**{k: str(v) for k, v in params.items()})
    if password is None:
        yield conninfo, env
        return
    with passfile(str(password)) as path:
        yield conninfo, {**env, "PGPASSFILE": path}


@contextlib.contextmanager
def passfile(password: str, owner_uid: int | None = None) -> Iterator[str]:
    """A temporary 0600 .pgpass file matching any host/db/user with `password`."""
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    fd, path = tempfile.mkstemp(prefix="pgtool-pgpass-")
    try:
        os.fchmod(fd, 0o600)
        if owner_uid is not None:
            os.fchown(fd, owner_uid, -1)
        os.write(fd, f"*:*:*:*:{escaped}\n".encode())
        os.close(fd)
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
