"""Process-wide CLI state set by the top-level callback (log level, output mode)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CliState:
    log_level: str = "info"
    log_json: bool | None = None  # None: JSON unless stderr is a TTY
    command: str | None = None  # the command being run, for a failure before its body starts


STATE = CliState()
