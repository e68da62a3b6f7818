"""Errors of archive-wal and restore-wal, each with the exit code PostgreSQL must see.

archive_command: 0 only when durably archived; every failure is 1 (2 for bad usage). Codes above 125
would make the archiver process restart without counting a failure in pg_stat_archiver.
restore_command: 0 restored; 1 "not in the archive" (PostgreSQL probes for files that do not exist);
126 for any real error (bad usage, unreadable or corrupt archive, cannot write the destination) so that
recovery stops instead of ending early and promoting with WAL missing.
"""

from __future__ import annotations

ARCHIVE_OK = 0
ARCHIVE_FAILED = 1
ARCHIVE_USAGE = 2

RESTORE_OK = 0
RESTORE_NOT_FOUND = 1
RESTORE_ERROR = 126


class WalCommandError(Exception):
    """A failure reported as one line with a specific exit code."""

    def __init__(self, message: str, exit_code: int, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.hint = hint

    def one_line(self) -> str:
        """The message and its hint as one line."""
        text = f"{self.message} ({self.hint})" if self.hint else self.message
        return " ".join(text.split())
