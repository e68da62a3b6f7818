"""Starting a process that outlives pgtool: archive-wal's uploader running ahead (`pgtool.wal.repo_ahead`).

Not `pgtool.pg.command.start`, for two reasons: this runs inside archive-wal, which the stdlib-only WAL
bundle carries (pg.command brings psycopg and pgtool's logging), and a detached child must not be in
pg.command's registry, whose point is that a signal ending the run reaches every child. The same rules
hold otherwise: an argv list, never a shell, nothing secret on it (the caller passes paths and a URL;
credentials stay in the environment).
"""

from __future__ import annotations

import os
import subprocess

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


def start_detached(argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> None:
    """Start `argv` in a session of its own (a signal to ours does not reach it), stdin and stdout
    closed, stderr shared (archive-wal's is the server log), cwd /, the environment plus `env`."""
    subprocess.Popen(
        list(argv),
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        cwd="/",
        start_new_session=True,
        close_fds=True,
    )
