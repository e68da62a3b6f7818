"""A psql process as a database session, for the first statements of a job that runs binaries.

`backup` needs an exported snapshot before pg_dump can start, and `verify` a database to restore
into before pg_restore can. Through psycopg, both would first pay the driver's import (~0.1 s,
most of pgtool's start-up); psql is connected in ~10 ms, so the binary starts that much sooner,
and the row counts beside it need no driver either. Names in statements are quoted with
`identifier()` (what psycopg.sql.Identifier does through libpq); values are never pasted in.

Output is CSV (`--csv -t`), so any value survives, newlines included; each statement's rows end at a
marker line that `\\echo` prints. `ON_ERROR_STOP` makes psql exit on the first error, which
`rows()` raises: ConnectError (exit 3) if psql could not connect, else OperationError.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import secrets
import signal
import subprocess
import tempfile
import weakref
from typing import IO, Any

from pgtool.config import redact_dsn
from pgtool.errors import ConnectError, OperationError
from pgtool.pg import command
from pgtool.pg.binaries import PgBinaries
from pgtool.pg.conninfo import connect_hint

# "psql:<stdin>:3: ERROR:  ..." or "ERROR:  ...": the server's message is what is worth showing.
_SQL_ERROR_PREFIX = re.compile(r"^(psql:[^:]*:\d+: )?(ERROR|FATAL):\s+")
# Sessions alive in this process, for `interrupt()` on SIGTERM.
_SESSIONS: weakref.WeakSet[Session] = weakref.WeakSet()
# psql's exit status when the connection failed or was lost (its documented exit codes).
_EXIT_CONNECTION = 2


class Session:
    """One psql session; use as a context manager. `rows(sql)` runs statements and returns their rows."""

    def __init__(
        self,
        pg: PgBinaries,
        dsn: str,
        *,
        dbname: str | None = None,
        application_name: str = "pgtool",
    ) -> None:
        self._pg, self._dsn = pg, dsn
        self._overrides = {"application_name": application_name}
        if dbname is not None:
            self._overrides["dbname"] = dbname
        self._marker = f"pgtool-end-{secrets.token_hex(8)}"
        self._stack = contextlib.ExitStack()
        self._proc: subprocess.Popen[str] | None = None
        self._stderr: IO[bytes] | None = None
        self._stderr_mark = 0  # where the current statement's messages start in it
        self._busy = False  # a statement's output not read to its end (the caller was interrupted)

    def __enter__(self) -> Session:
        try:
            conninfo, env = self._stack.enter_context(command.libpq_args(self._dsn, **self._overrides))
            # A file, not a pipe: notices written while nobody reads must never block psql.
            self._stderr = self._stack.enter_context(tempfile.TemporaryFile())
            argv = [self._pg.path("psql"), "-X", "-q", "--csv", "-t", "-v", "ON_ERROR_STOP=1"]
            argv += ["--no-password", f"--dbname={conninfo}"]
            self._proc = command.start(
                argv,
                env={**env, "PGCLIENTENCODING": "UTF8"},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                encoding="utf-8",
                # Its own session: a Ctrl-C meant for pgtool must not end psql under pgtool's cleanup.
                start_new_session=True,
            )
        except BaseException:
            self._stack.close()
            raise
        _SESSIONS.add(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def usable(self) -> bool:
        """psql runs and nothing is left unread: `rows()` can be called."""
        return self._proc is not None and self._proc.poll() is None and not self._busy

    def rows(self, statements: str) -> list[list[str]]:
        """Run `statements` (each ending in `;`); the rows printed, as CSV fields (NULL is "")."""
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        if self._busy:
            raise OperationError("psql session interrupted mid-statement; open a new one")
        self._busy = True
        assert self._stderr is not None
        # fstat, not tell(): the file offset is shared with psql, which writes at its end.
        self._stderr_mark = os.fstat(self._stderr.fileno()).st_size
        try:
            proc.stdin.write(f"{statements}\n\\echo {self._marker}\n")
            proc.stdin.flush()
        except BrokenPipeError:
            self._raise_failure()
        lines = []
        while (line := proc.stdout.readline()) != f"{self._marker}\n":
            if not line:
                self._raise_failure()
            lines.append(line)
        self._busy = False
        return list(csv.reader(lines))

    def close(self) -> None:
        """End the session (its open transaction is rolled back) and wait for psql to exit."""
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                command.stop(proc, grace=1)
        self._stack.close()

    def _raise_failure(self) -> Any:
        proc = self._proc
        assert proc is not None and self._stderr is not None
        code = proc.wait()
        messages = os.pread(self._stderr.fileno(), 1 << 16, self._stderr_mark).decode("utf-8", "replace")
        detail = " ".join(redact_dsn(messages).split()).removeprefix("psql: error: ")
        detail = detail or f"psql exited with status {code}"
        if code == _EXIT_CONNECTION:
            raise ConnectError(f"cannot connect: {detail}", hint=connect_hint(detail))
        raise OperationError(_SQL_ERROR_PREFIX.sub("", detail))


def session_pids() -> set[int]:
    """PIDs of the psql processes serving sessions (signalled by `interrupt`, not terminated)."""
    return {s._proc.pid for s in list(_SESSIONS) if s._proc is not None}


def interrupt() -> None:
    """Cancel the statement each session is running, as Ctrl-C in psql does (for SIGTERM).

    psql sends the server a cancel request, so a long count stops now rather than when it is done;
    the statement fails and `rows()` raises. Idle sessions are left alone: they still drop what the
    run created.
    """
    for session in list(_SESSIONS):
        proc = session._proc
        if session._busy and proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)


def identifier(*parts: str) -> str:
    """A (schema-qualified) SQL identifier, quoted as libpq's PQescapeIdentifier does: "a"."b""c"."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in parts)


def query(pg: PgBinaries, dsn: str, statements: str, **session: Any) -> list[list[str]]:
    """Run `statements` in a short psql session; the rows they print."""
    with Session(pg, dsn, **session) as s:
        return s.rows(statements)
