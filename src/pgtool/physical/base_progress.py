"""Progress of pg_basebackup on a terminal, for both `basebackup` destinations."""

from __future__ import annotations

import re
import sys

_PROGRESS = re.compile(r"^\s*\d+/\d+ kB \(")


class TerminalProgress:
    """pg_basebackup's own `--progress` (bytes sent of the server's estimate, once a second) shown on
    one line of a terminal; on anything else nothing is asked for (the estimate costs the server a
    pass over the data directory, and logs are no place for a line a second)."""

    def __init__(self) -> None:
        from pgtool.obs.logline import isatty

        self.argv = ["--progress"] if isatty(sys.stderr) else []
        self._shown = False

    def line(self, text: str) -> bool:
        """`command.run`'s on_progress: True (and shown) for a progress line."""
        if not _PROGRESS.match(text):
            return False
        sys.stderr.write("\r\033[K" + text.strip())
        sys.stderr.flush()
        self._shown = True
        return True

    def end(self) -> None:
        if self._shown:
            sys.stderr.write("\n")
            self._shown = False
