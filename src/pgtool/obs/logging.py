"""Structured logging: one event per line on stderr, JSON unless stderr is a TTY.

The practices are structlog's (bound context, key=value events, JSON for machines, one summary event
per run); the implementation is ours because `import structlog` pulls in rich and cost ~90 ms of
every command's start-up, a third of it, on a tool that CronJobs start thousands of times. The line
format lives in `pgtool.obs.logline`, shared with the per-WAL-segment fast path.

Every string an event carries passes through `redact_dsn`, so a DSN that slips into an event (an
error from libpq, a command line) never shows its password. Configure once per process with
`configure()`; capabilities just call `get_logger()`.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from pgtool.config import redact_dsn
from pgtool.obs import logline

LEVELS = tuple(logline.LEVELS)


class _Config:
    threshold: int | None = None  # None: not configured yet
    as_json = True
    color = False
    stream: Any = None


_CONFIG = _Config()
_WRITE_LOCK = threading.Lock()


def configure(level: str = "info", *, json: bool | None = None, stream: Any = None) -> None:
    """Configure logging for this process.

    level: one of LEVELS. json: force JSON (True) or console (False); None picks JSON unless the
    stream is a TTY. stream: where lines go (stderr, looked up at each write, by default).
    """
    target = stream if stream is not None else sys.stderr
    _CONFIG.threshold = logline.LEVELS[level.lower()]
    _CONFIG.as_json = (not logline.isatty(target)) if json is None else json
    _CONFIG.color = not _CONFIG.as_json and logline.isatty(target)
    _CONFIG.stream = stream


def is_configured() -> bool:
    return _CONFIG.threshold is not None


class Logger:
    """A logger with bound context: `get_logger().bind(database="app").info("dumped", size=1)`."""

    __slots__ = ("_context",)

    def __init__(self, context: dict[str, Any]) -> None:
        self._context = context

    def bind(self, **values: Any) -> Logger:
        return Logger({**self._context, **values})

    def debug(self, event: str, **fields: Any) -> None:
        self._log("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log("error", event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._log("error", event, {**fields, "exc_info": True})

    def is_enabled_for(self, level: str) -> bool:
        if _CONFIG.threshold is None:
            configure(logline.level_from_env("warning"), json=logline.wants_json(sys.stderr))
        return logline.LEVELS[level] >= (_CONFIG.threshold or 0)

    def _log(self, level: str, event: str, fields: dict[str, Any]) -> None:
        if not self.is_enabled_for(level):
            return
        record = {**self._context, **fields}
        if record.pop("exc_info", False):
            record["exception"] = _traceback_text()
        for key, value in record.items():
            if isinstance(value, str):
                record[key] = redact_dsn(value)
        line = logline.render(redact_dsn(event), level, record, as_json=_CONFIG.as_json, color=_CONFIG.color)
        with _WRITE_LOCK:
            logline.write(line, _CONFIG.stream)


def _traceback_text() -> str | None:
    """The exception being handled, as plain traceback text (no local variables: they may hold DSNs)."""
    exc = sys.exc_info()[1]
    if exc is None:
        return None
    import traceback

    return "".join(traceback.format_exception(exc)).rstrip()


def get_logger(**initial: Any) -> Logger:
    """A logger bound to `initial`.

    Used as a library (benchmarks, scripts) without `configure()`, pgtool logs warnings and errors only,
    or what PGTOOL_LOG_LEVEL says, in the format PGTOOL_LOG_FORMAT says.
    """
    return Logger(dict(initial))
