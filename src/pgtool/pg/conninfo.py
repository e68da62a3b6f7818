"""DSNs for libpq's client binaries, rewritten without loading the Python driver.

pg_dump, pg_restore and psql get the DSN on argv with the job's database (and application_name)
put in. Parsing a DSN takes libpq's own parser, reached through psycopg, whose import costs ~0.1 s:
`backup` and `verify` would pay it before their first binary could start. libpq lets a later
parameter override an earlier one, in a `key=value` string as in a URI's query, so a plain DSN can
be extended instead of parsed. `extend` does that, and declines (None) whatever it cannot extend
with certainty: a DSN that may hold a password (which must leave argv, see `command.libpq_args`),
quotes, backslashes, percent-escapes, or a bare database name. The caller then parses with libpq.
`connect_hint` says what to fix for a connection error, from psycopg or psql alike. Stdlib only.
"""

from __future__ import annotations

from urllib.parse import quote

URI_PREFIXES = ("postgresql://", "postgres://")
# Characters whose meaning in a DSN depends on parsing (escapes, quoting, percent-decoding).
_UNSAFE = frozenset("'\"\\%#")


def may_hold_password(dsn: str) -> bool:
    """True if `dsn` might carry a password (conservative: a false True only costs the slow path)."""
    if "password" in dsn.lower():  # password=, ?password=, sslpassword=
        return True
    if dsn.startswith(URI_PREFIXES):
        # libpq reads `user:password@` from the start of the authority up to the first '@' or '/'.
        rest = dsn.split("://", 1)[1]
        cut = min((i for i in (rest.find("@"), rest.find("/")) if i >= 0), default=-1)
        if cut >= 0 and rest[cut] == "@" and ":" in rest[:cut]:
            return True
    return False


def extend(dsn: str, **params: str) -> str | None:
    """`dsn` with `params` set (later parameters win in libpq), or None if it must be parsed instead."""
    if may_hold_password(dsn) or any(c in _UNSAFE or (c.isspace() and c != " ") for c in dsn):
        return None
    if dsn.startswith(URI_PREFIXES):
        if " " in dsn:
            return None
        query = "&".join(f"{key}={quote(value, safe='')}" for key, value in params.items())
        if not query:
            return dsn
        separator = "" if dsn.endswith(("?", "&")) else "&" if "?" in dsn else "?"
        return f"{dsn}{separator}{query}"
    if dsn.strip() and "=" not in dsn:
        return None  # a bare database name, not a connection string
    if dsn.rstrip().endswith("="):
        return None  # libpq would take what follows `key=` (spaces skipped) as that key's value
    pairs = " ".join(f"{key}={_quoted(value)}" for key, value in params.items())
    return " ".join(part for part in (dsn.strip(), pairs) if part)


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def connect_hint(message: str) -> str:
    """What to fix, for a libpq connection error message (psycopg's or psql's)."""
    low = message.lower()
    if "password authentication failed" in low or "no password supplied" in low:
        return "check the password in the DSN, PGPASSWORD or ~/.pgpass"
    if "does not exist" in low and "database" in low:
        return "check the database name in the DSN"
    if "does not exist" in low and "role" in low:
        return "check the user name in the DSN"
    if "no pg_hba.conf entry" in low:
        return "allow this client in the server's pg_hba.conf"
    if "connection refused" in low or "no such file or directory" in low:
        return "is the server running, and are host and port right?"
    if "timeout" in low or "timed out" in low:
        return "the host did not answer; check host, port and firewalls"
    if "could not translate host name" in low:
        return "check the host name in the DSN"
    return "check the DSN (--dsn, PGTOOL_DSN, DATABASE_URL or PG* variables)"
