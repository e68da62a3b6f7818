"""structlog set-up: human console lines on a TTY, JSON lines on stderr otherwise.

Every string a log event carries passes through `redact_dsn`, so a DSN that slips into an event (an
error from libpq, a command line) never shows its password. Configure once per process with
`configure()`; capabilities just call `get_logger()`.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog

from pgtool.config import redact_dsn

LEVELS = ("debug", "info", "warning", "error")


def _redact(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = redact_dsn(value)
    return event


def configure(level: str = "info", *, json: bool | None = None, stream: Any = None) -> None:
    """Configure structlog for this process.

    level: one of LEVELS. json: force JSON (True) or console (False); None picks JSON unless stderr is
    a TTY. stream: where lines go (stderr by default).
    """
    out = stream if stream is not None else sys.stderr
    if json is None:
        json = not (hasattr(out, "isatty") and out.isatty())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    if json:
        processors += [structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer()]
    else:
        # Imported only here: the dev renderer pulls in rich, which costs start-up time.
        from structlog.dev import ConsoleRenderer, plain_traceback

        processors.append(ConsoleRenderer(colors=out.isatty(), exception_formatter=plain_traceback))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def get_logger(**initial: Any) -> Any:
    """A bound structlog logger.

    Used as a library (benchmarks, scripts) without `configure()`, pgtool logs warnings and errors only,
    or what PGTOOL_LOG_LEVEL says, instead of structlog's print-everything default.
    """
    if not structlog.is_configured():
        level = os.environ.get("PGTOOL_LOG_LEVEL", "warning").lower()
        configure(level if level in LEVELS else "warning")
    return structlog.get_logger(**initial)
