"""One log event as one line: the implementation lives in `pgtool.wal.logline`.

`pgtool.wal` must import nothing from the rest of pgtool (it is bundled on its own as the server
user's archive_command/restore_command), so the renderer it shares with `pgtool.obs.logging` moved
there; this module keeps the old import path.
"""

from __future__ import annotations

from pgtool.wal.logline import (
    FORMATS,
    LEVELS,
    isatty,
    json_str,
    json_value,
    level_from_env,
    render,
    timestamp,
    wants_json,
    write,
)

__all__ = [
    "FORMATS",
    "LEVELS",
    "isatty",
    "json_str",
    "json_value",
    "level_from_env",
    "render",
    "timestamp",
    "wants_json",
    "write",
]
