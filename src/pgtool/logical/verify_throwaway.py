"""The throwaway databases restore drills restore into, and the locks that keep drills apart.

Each verify run draws a random token and holds a session advisory lock on it (`RUN_LOCK_CLASS`,
token) for its whole life; every throwaway database it creates is named `pgtool_verify_<token>_<db>`.
pg_locks is cluster-wide, so at start a run drops exactly the `pgtool_verify_*` databases whose token
no live run holds: those a killed run (SIGKILL, OOM, node loss) left behind. A run never drops a
database of another live run, whichever maintenance database its DSN names.

Runs against the same maintenance database also exclude each other (`OVERLAP_LOCK_KEY`): two drills at
once would only compete for the same disk and cores.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any

import psycopg
from psycopg import sql

from pgtool.errors import OperationError, PgtoolError, error_line
from pgtool.logical.dump_sessions import Ident, session
from pgtool.obs.logging import get_logger

THROWAWAY_PREFIX = "pgtool_verify_"
# "pgtool" in ASCII: the key of the advisory lock that keeps runs on one maintenance database apart.
OVERLAP_LOCK_KEY = 0x7067746F6F6C
# "pgtv": the first key of each run's own lock, the second being its token.
RUN_LOCK_CLASS = 0x70677476
_MAX_IDENTIFIER_BYTES = 63
_TOKEN = re.compile(rf"^{THROWAWAY_PREFIX}([0-9a-f]{{8}})_")
_STALE_SQL = """
SELECT d.datname FROM pg_catalog.pg_database d
WHERE d.datname LIKE 'pgtool\\_verify\\_%' ORDER BY 1
"""
_LIVE_TOKENS_SQL = """
SELECT l.objid::pg_catalog.int8 FROM pg_catalog.pg_locks l
WHERE l.locktype = 'advisory' AND l.classid = %s::pg_catalog.oid AND l.objsubid = 2 AND l.granted
"""

Session = psycopg.Connection[Any]


def new_token() -> str:
    """A run's token: 8 hex digits below 2**31, so it is a positive int4 advisory lock key."""
    return f"{secrets.randbelow(2**31):08x}"


def throwaway_name(database: str, token: str) -> str:
    """`pgtool_verify_<token>_<db>`, the name reduced to letters, digits, `_` and `-` (plus a hash
    when that changed it or it had to be shortened to fit 63 bytes)."""
    head = f"{THROWAWAY_PREFIX}{token}_"
    tame = re.sub(r"[^A-Za-z0-9_-]", "_", database)
    if tame == database and len(head) + len(tame) <= _MAX_IDENTIFIER_BYTES:
        return head + tame
    digest = hashlib.sha256(database.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    room = _MAX_IDENTIFIER_BYTES - len(head) - len(digest) - 1
    return f"{head}{tame[:room]}_{digest}"


def lock_run(conn: Session, token: str) -> None:
    """Take the overlap lock and the run's own lock on the maintenance session, or LockBusyError."""
    from pgtool.errors import LockBusyError

    locked = conn.execute(
        "SELECT pg_catalog.pg_try_advisory_lock(%s::pg_catalog.int8),"
        " pg_catalog.pg_try_advisory_lock(%s::pg_catalog.int4, %s::pg_catalog.int4)",
        [OVERLAP_LOCK_KEY, RUN_LOCK_CLASS, int(token, 16)],
    ).fetchone()
    if locked is None or not locked[0]:
        raise LockBusyError(
            "another pgtool verify is running against this server's database",
            hint="wait for it to finish; runs must not overlap",
        )
    if not locked[1]:
        raise OperationError("could not take this run's own advisory lock (token collision); run again")


def create(conn: Session, name: str, encoding: str | None, server_major: int) -> None:
    """CREATE DATABASE `name` from template0, in the dump's encoding when it is not UTF-8.

    A database in another encoding gets the C locale, which suits every encoding: the restore must
    not convert the dump's names and text (a SQL_ASCII dump holds bytes UTF-8 would refuse).
    """
    statement = sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
    if encoding and encoding.upper() not in ("UTF8", "UTF-8"):
        statement += sql.SQL(" ENCODING {} LC_COLLATE 'C' LC_CTYPE 'C'").format(sql.Literal(encoding))
        if server_major >= 15:
            statement += sql.SQL(" LOCALE_PROVIDER libc")
    try:
        conn.execute(statement)
    except psycopg.Error as exc:
        raise OperationError(f"cannot create throwaway database {name}: {error_line(exc)}") from None


def drop(dsn: str, name: str, conn: Session | None = None) -> None:
    """DROP DATABASE IF EXISTS ... WITH (FORCE), on `conn` if it still works, else on a fresh session.

    The run's session saves a connection set-up per database; after a SIGTERM or a server-side
    error it may be gone or mid-statement, and the drop must still happen.
    """
    # Ident, not sql.Identifier: a stale name may hold bytes the session's encoding refuses (a role
    # with CREATEDB can create one from a SQL_ASCII database), which Identifier would fail to encode.
    statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(Ident(name))
    if conn is not None and not conn.closed:
        try:
            conn.execute(statement)
            return
        except psycopg.Error as exc:
            get_logger().debug("drop in the run's session failed, retrying in a fresh one", error=str(exc))
    try:
        with session(dsn, application_name="pgtool-verify") as fresh:
            fresh.execute(statement)
    except psycopg.Error as exc:
        raise OperationError(f"cannot drop throwaway database {name}: {error_line(exc)}") from None


def drop_stale(conn: Session, dsn: str) -> list[str]:
    """Drop throwaway databases no live run owns (call with this run's lock held); their names."""
    live = {f"{row[0]:08x}" for row in conn.execute(_LIVE_TOKENS_SQL, [RUN_LOCK_CLASS]).fetchall()}
    stale = []
    for (name,) in conn.execute(_STALE_SQL).fetchall():
        token = _TOKEN.match(name)
        if token is not None and token.group(1) in live:
            continue
        get_logger().warning("dropping throwaway database left by an earlier run", database=name)
        try:
            drop(dsn, name, conn)
        except PgtoolError as exc:
            get_logger().error("could not drop stale throwaway database", database=name, error=exc.one_line())
            continue
        stale.append(name)
    return stale
