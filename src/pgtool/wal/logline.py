"""How one log event becomes one line: JSON for machines, `key=value` for a person at a terminal.

Shared by `pgtool.obs.logging` (every command, through `pgtool.obs.logline`) and `pgtool.wal.fastcli`
(archive-wal/restore-wal, run once per WAL segment). It lives in `pgtool.wal` because that package
must work on its own (bundled as the server user's archive/restore command), and it imports nothing
beyond os, sys and time: the `json` module alone costs
~1.5 ms, which the per-segment path cannot afford. Values that are not plain scalars fall back to
`json.dumps`, imported only then.

Line shapes (the keys Promtail and the docs rely on):
  JSON:    {"<field>": ..., "event": "run finished", "level": "info", "timestamp": "...Z"}
  console: 2026-01-01T00:00:00.000000Z [info     ] run finished    command=backup outcome=success
"""

from __future__ import annotations

import os
import sys
import time

# Not typing.TYPE_CHECKING: this module is on archive-wal's per-segment path, where importing typing
# costs ~7 ms. Mypy reads any constant of this name as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
FORMATS = ("auto", "json", "console")
_COLORS = {"debug": "\x1b[2m", "info": "\x1b[32m", "warning": "\x1b[33m", "error": "\x1b[1;31m"}
_RESET = "\x1b[0m"


def level_from_env(default: str = "info") -> str:
    """PGTOOL_LOG_LEVEL if it names a level, else `default`."""
    level = os.environ.get("PGTOOL_LOG_LEVEL", default).lower()
    return level if level in LEVELS else default


def wants_json(stream: object, fmt: str | None = None) -> bool:
    """JSON unless the format (argument, else PGTOOL_LOG_FORMAT) is console, or auto and `stream` is a TTY."""
    fmt = (fmt or os.environ.get("PGTOOL_LOG_FORMAT", "auto")).lower()
    if fmt in ("json", "console"):
        return fmt == "json"
    return not isatty(stream)


def isatty(stream: object) -> bool:
    """True when `stream` is a terminal; False for anything else, closed streams included."""
    try:
        return bool(getattr(stream, "isatty")())  # noqa: B009 - any object may be passed
    except (AttributeError, TypeError, ValueError, OSError):
        return False


def timestamp(now: float | None = None) -> str:
    """UTC, ISO 8601 with microseconds and a Z."""
    now = time.time() if now is None else now
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"


def render(event: str, level: str, fields: dict[str, object], *, as_json: bool, color: bool = False) -> str:
    """One line (without the newline) for an event with its fields."""
    stamp = timestamp()
    if as_json:
        record = {**fields, "event": event, "level": level, "timestamp": stamp}
        return "{" + ", ".join(f"{json_str(k)}: {json_value(v)}" for k, v in record.items()) + "}"
    pairs = " ".join(f"{_escape(str(k))}={_console_value(k, v)}" for k, v in fields.items())
    tag = f"[{level:<9}]"
    if color:
        tag = f"{_COLORS.get(level, '')}{tag}{_RESET}"
    return f"{stamp} {tag} {_escape(event):<15} {pairs}".rstrip()


def _console_value(key: object, value: object) -> str:
    text = str(value)
    # A traceback stays readable, each of its lines indented so that none can pass for a log line.
    # Anything else is one logfmt token: a name holding a newline or a carriage return must not
    # forge a line of its own.
    if key == "exception" and "\n" in text:
        return "".join("\n    " + _escape(line) for line in text.splitlines())
    if not text or any(c in text for c in ' ="\\') or _escape(text) != text:
        return json_str(text)
    return text


def _escape(text: str) -> str:
    """`text` with control characters (newline, carriage return, escape, ...) written as escapes."""
    if not any(ch < " " or ch == "\x7f" for ch in text):
        return text
    return "".join(repr(ch)[1:-1] if ch < " " or ch == "\x7f" else ch for ch in text)


def json_str(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch < " " or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def json_value(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if value == value and value not in (float("inf"), float("-inf")) else "null"
    if isinstance(value, str):
        return json_str(value)
    import json

    return json.dumps(value, default=str, ensure_ascii=False)


def write(line: str, stream: TextIO | None = None) -> None:
    """Write one line and flush; a closed or broken stderr never changes a command's outcome."""
    out = sys.stderr if stream is None else stream
    try:
        out.write(line + "\n")
        out.flush()
    except (OSError, ValueError):
        pass
