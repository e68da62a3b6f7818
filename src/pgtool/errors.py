"""One exception tree for all of pgtool, each class carrying its documented exit code.

The CLI maps these to exit codes in one place (`pgtool.cli.runner`). Capabilities raise them with a
message that names what failed and, through `hint`, what to do about it. Messages never contain
passwords: build them from redacted DSNs (`pgtool.config.redact_dsn`).

Exit codes (documented in the README):
    0  success
    1  the operation failed, or findings were reported (lint, verify, status)
    2  usage error: bad arguments, invalid configuration
    3  cannot connect to PostgreSQL (unreachable, authentication failed, database missing)
`archive-wal` and `restore-wal` have PostgreSQL-imposed codes of their own (see `pgtool.wal`).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CONNECT = 3


class PgtoolError(Exception):
    """Base of every error pgtool reports to the user as one line."""

    exit_code: int = EXIT_FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """The message plus its hint, as the single line the user sees."""
        text = self.message
        if self.hint:
            text = f"{text} ({self.hint})"
        return " ".join(text.split())


class UsageError(PgtoolError):
    """Bad arguments or configuration: nothing was attempted."""

    exit_code = EXIT_USAGE


class ConnectError(PgtoolError):
    """PostgreSQL could not be reached, refused the login, or the database does not exist."""

    exit_code = EXIT_CONNECT


class OperationError(PgtoolError):
    """The operation was attempted and failed."""

    exit_code = EXIT_FAILED


class FindingsError(PgtoolError):
    """The command ran and found problems (lint findings, a failed verification)."""

    exit_code = EXIT_FAILED


class BinaryNotFoundError(OperationError):
    """A PostgreSQL client or server binary could not be located."""


class ExternalCommandError(OperationError):
    """An external binary exited non-zero; `stderr_tail` holds its last lines (already redacted)."""

    def __init__(
        self,
        message: str,
        *,
        returncode: int,
        stderr_tail: str = "",
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.returncode = returncode
        self.stderr_tail = stderr_tail


class LockBusyError(OperationError):
    """Another run holds the lock this run needs."""


class NotFoundError(OperationError):
    """A query that must find a row found none (the thing asked for does not exist, or holds nothing)."""


class AlreadyExistsError(OperationError):
    """The rows to create are already there (a unique violation, SQLSTATE 23505, or the check before it).

    `constraint` names the unique constraint PostgreSQL reported, when there was one.
    """

    def __init__(self, message: str, *, constraint: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.constraint = constraint


def error_line(exc: BaseException) -> str:
    """One line describing `exc` for a per-item result (a database that failed, a file that did not verify).

    pgtool errors give their message and hint; OS errors their reason and file; anything else (a
    psycopg error, say) its message with whitespace folded.
    """
    if isinstance(exc, PgtoolError):
        return exc.one_line()
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    return " ".join(str(exc).split()) or type(exc).__name__
