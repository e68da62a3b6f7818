"""Structured logging: one event per line on stderr, JSON unless stderr is a TTY.

The practices are structlog's (bound context, key=value events, JSON for machines, one summary event
per run); the implementation is ours because `import structlog` pulls in rich and costs 77 ms of
every command's start-up (18 ms for this module; docs/developing.md), on a tool that CronJobs start
thousands of times. The line format lives in `pgtool.obs.logline`, shared with the per-WAL-segment fast path.

Every string an event carries passes through `redact_dsn`, so a DSN that slips into an event (an
error from libpq, a command line) never shows its password. Configure once per process with
`configure()`; capabilities just call `get_logger()`. `configure()` also bridges Python's standard
`logging` (psycopg, kubernetes, urllib3) and `warnings` into the same lines, redacted, with the
library's logger name in `logger`: otherwise they would print as bare text and break the JSON-lines
contract. Tests read events through `capture_logs()`.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import Any

from pgtool.config import redact_dsn
from pgtool.obs import logline

LEVELS = tuple(logline.LEVELS)


class _Config:
    threshold: int | None = None  # None: not configured yet
    as_json = True
    color = False
    stream: Any = None
    captured: list[dict[str, Any]] | None = None  # capture_logs(): events kept instead of written


_CONFIG = _Config()
# Re-entrant: a signal handler that logs may interrupt a write in the same thread.
_WRITE_LOCK = threading.RLock()


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
    _bridge_stdlib_logging(_CONFIG.threshold)


def reset() -> None:
    """Forget the configuration: the next event configures from the environment (tests, scripts)."""
    _CONFIG.threshold = None
    _CONFIG.stream = None
    _CONFIG.captured = None


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
        event = redact_dsn(event)
        if _CONFIG.captured is not None:
            _CONFIG.captured.append({**record, "event": event, "level": level})
            return
        line = logline.render(event, level, record, as_json=_CONFIG.as_json, color=_CONFIG.color)
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


@contextlib.contextmanager
def capture_logs(level: str = "debug") -> Iterator[list[dict[str, Any]]]:
    """Collect the events logged inside the block (at `level` and above) instead of writing them.

    Each event is a dict of its fields plus `event` and `level`, redacted as a written line would be;
    records from the standard `logging` module are included. Configuration is restored afterwards.
    """
    saved = (_CONFIG.threshold, _CONFIG.as_json, _CONFIG.color, _CONFIG.stream, _CONFIG.captured)
    events: list[dict[str, Any]] = []
    configure(level, json=True)
    _CONFIG.captured = events
    try:
        yield events
    finally:
        _CONFIG.threshold, _CONFIG.as_json, _CONFIG.color, _CONFIG.stream, _CONFIG.captured = saved
        if saved[0] is not None:
            _bridge_stdlib_logging(saved[0])


def _bridge_stdlib_logging(threshold: int) -> None:
    """Route the standard `logging` module (and `warnings`) into pgtool's lines, once per process."""
    import logging

    root = logging.getLogger()
    bridge = _bridge_type()
    if not any(isinstance(h, bridge) for h in root.handlers):
        root.addHandler(bridge())
        logging.captureWarnings(True)
    root.setLevel(threshold)  # pgtool's levels are logging's numbers


_BRIDGE: list[type] = []  # built on first use: importing this module must not import `logging`


def _bridge_type() -> type:
    if _BRIDGE:
        return _BRIDGE[0]
    import logging

    class Bridge(logging.Handler):
        """A logging.Handler that re-emits each record as a pgtool event."""

        def emit(self, record: logging.LogRecord) -> None:
            try:
                level = "debug" if record.levelno < 20 else "info" if record.levelno < 30 else None
                level = level or ("warning" if record.levelno < 40 else "error")
                fields: dict[str, Any] = {"logger": record.name}
                if record.exc_info and record.exc_info[1] is not None:
                    exc = record.exc_info[1]
                    fields["error"] = f"{type(exc).__name__}: {exc}"
                    if (_CONFIG.threshold or 0) <= 10:  # a traceback only at debug level
                        fields["exception"] = logging.Formatter().formatException(record.exc_info)
                Logger({})._log(level, record.getMessage(), fields)
            except Exception:  # a log record must never break the run
                self.handleError(record)

    _BRIDGE.append(Bridge)
    return Bridge
