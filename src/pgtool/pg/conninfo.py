"""DSNs read the way libpq reads them, and what to say when they are wrong.

`parse` goes through libpq's own parser (psycopg.conninfo), so pgtool never guesses how a DSN
splits: every client binary gets a conninfo rebuilt from libpq's reading. A malformed DSN is a
UsageError (exit 2) whichever command meets it, with values libpq only checks when connecting
(a port that is not a number, an unknown sslmode) checked here too, and the message never echoes a
password, even one libpq quotes back (`invalid percent-encoded token: "..."`).
`connect_hint` says what to fix for a connection error.
"""

from __future__ import annotations

import re
from typing import Any

from pgtool.config import REDACTED, redact_dsn
from pgtool.errors import UsageError

_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_QUOTED = re.compile(r'"[^"]*"')
# A malformed DSN may hold a password with raw spaces (libpq wants %20 in a URI), where `redact_dsn`,
# made for well-formed ones, stops: in a URI, everything up to the userinfo's '@' or the parameter's
# '&' is the password.
_LOOSE_URI_PASSWORD = re.compile(r"(?P<pre>\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@]*(?=@)", re.I)
_LOOSE_QUERY_PASSWORD = re.compile(r"(?P<pre>[?&](?:ssl)?password=)[^&]*", re.I)


def parse(dsn: str) -> dict[str, str]:
    """`dsn`'s parameters as libpq reads them (password included: never log them).

    Raises UsageError for a DSN libpq would refuse.
    """
    from psycopg.conninfo import conninfo_to_dict

    if not dsn:
        return {}
    try:
        params: dict[str, Any] = conninfo_to_dict(dsn)
    except Exception as exc:  # psycopg.ProgrammingError
        raise invalid(dsn, str(exc)) from None
    for port in str(params.get("port", "")).split(","):
        if port.strip() and not port.strip().isdigit():
            raise invalid(dsn, f"port {port.strip()!r} is not a number")
    for key in ("connect_timeout", "keepalives_idle", "keepalives_interval", "keepalives_count"):
        value = str(params.get(key, "")).strip()
        if value and not value.lstrip("-").isdigit():
            raise invalid(dsn, f"{key} {value!r} is not a number")
    if "sslmode" in params and params["sslmode"] not in _SSLMODES:
        raise invalid(dsn, f"sslmode {params['sslmode']!r} is not one of {', '.join(_SSLMODES)}")
    return {k: str(v) for k, v in params.items()}


def check(dsn: str) -> None:
    """Raise UsageError if `dsn` is malformed (see `parse`)."""
    parse(dsn)


def invalid(dsn: str, detail: str) -> UsageError:
    """The UsageError for a malformed `dsn`, with `detail` (libpq's message) made safe to show."""
    loose = _LOOSE_URI_PASSWORD.sub(lambda m: m["pre"] + REDACTED, dsn)
    safe = redact_dsn(_LOOSE_QUERY_PASSWORD.sub(lambda m: m["pre"] + REDACTED, loose))
    # libpq quotes the piece it choked on, which may be a password: keep a quoted piece only when the
    # redacted DSN shows it too.
    detail = _QUOTED.sub(lambda m: m[0] if m[0][1:-1] in safe else '"***"', redact_dsn(detail))
    return UsageError(
        f"invalid DSN {safe!r}: {detail}",
        hint="a URI postgresql://user@host:port/db or key=value pairs; see libpq's connection strings",
    )


# libpq's connection failures, by words that must all appear in the message (lower case), and the fix.
_CONNECT_HINTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("password authentication failed",), "check the password in the DSN, PGPASSWORD or ~/.pgpass"),
    (("no password supplied",), "check the password in the DSN, PGPASSWORD or ~/.pgpass"),
    (("does not exist", "database"), "check the database name in the DSN"),
    (("does not exist", "role"), "check the user name in the DSN"),
    (("no pg_hba.conf entry",), "allow this client in the server's pg_hba.conf"),
    (("connection refused",), "is the server running, and are host and port right?"),
    (("no such file or directory",), "is the server running, and are host and port right?"),
    (("timeout",), "the host did not answer; check host, port and firewalls"),
    (("timed out",), "the host did not answer; check host, port and firewalls"),
    (("could not translate host name",), "check the host name in the DSN"),
)


def connect_hint(message: str) -> str:
    """What to fix, for a libpq connection error message (psycopg's or a client binary's)."""
    low = message.lower()
    for words, hint in _CONNECT_HINTS:
        if all(word in low for word in words):
            return hint
    return "check the DSN (--dsn, PGTOOL_DSN, DATABASE_URL or PG* variables)"
