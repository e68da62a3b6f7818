"""psycopg connections with pgtool's conventions.

- `application_name` is `pgtool` (reporting uses `pgtool-reporting`) so operators see who we are;
- connection failures become ConnectError (exit 3) with one line saying what to fix, password removed;
- `connect_timeout` defaults to 10 s: a CronJob must not hang on a dead host;
- the session's `search_path` is pinned to '' before anything else runs (see `connect`).

Why the pin: pgtool runs as a superuser in databases other roles own. A database owner (any role with
CREATEDB) can `ALTER DATABASE d SET search_path = public, pg_catalog` and define `public.current_database()`,
`public.to_regclass(text)`, an operator, ... An unqualified call from pgtool would then run the owner's code
with pgtool's privileges (CVE-2018-1058). With search_path '' only pg_catalog is searched for functions,
operators and types (implicitly, first), so every unqualified call is PostgreSQL's own; relations outside
pg_catalog must be schema-qualified. pg_dump does the same: `SELECT pg_catalog.set_config('search_path',
'', false)` as its first statement.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Literal

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgtool.config import redact_dsn
from pgtool.errors import ConnectError
from pgtool.pg.conninfo import connect_hint, invalid

DEFAULT_APPLICATION_NAME = "pgtool"
DEFAULT_CONNECT_TIMEOUT = 10

# How a connection's search_path is pinned (the `pin` argument of `connect`):
# - "session": one statement right after connecting, for the whole session. The default: every direct
#   connection to PostgreSQL.
# - "transaction": nothing at connect; the caller starts each transaction with `pin_transaction(conn)`
#   (or opens it with `pinned_transaction(conn)`), which pins with `set_config(..., true)`, i.e. until
#   that transaction ends. For commands that also work through PgBouncer in transaction pooling mode
#   (partitions, refresh-mv): there a session-level SET would stay on the pooled server connection and
#   change the search_path of whichever client gets it next (server_reset_query runs only in session
#   mode), while our own next transaction may land on another server connection that never saw it.
#   Every statement such a command runs must therefore be inside a pinned transaction.
# - "off": nothing. Only where no SQL function can run: PgBouncer's admin console (the virtual `pgbouncer`
#   database speaks SHOW commands only and rejects set_config), or a throwaway cluster pgtool itself
#   created and configured (bench behind its own PgBouncer).
Pin = Literal["session", "transaction", "off"]
PIN_SQL = "SELECT pg_catalog.set_config('search_path', '', false)"
PIN_LOCAL_SQL = "SELECT pg_catalog.set_config('search_path', '', true)"


def with_params(dsn: str, **overrides: Any) -> str:
    """`dsn` with some parameters replaced (e.g. dbname), as a conninfo string."""
    try:
        return make_conninfo(dsn, **{k: v for k, v in overrides.items() if v is not None})
    except psycopg.ProgrammingError as exc:
        raise invalid(dsn, str(exc)) from None


def dsn_params(dsn: str) -> dict[str, Any]:
    """The DSN's parameters as a dict (password included: do not log it)."""
    try:
        return conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise invalid(dsn, str(exc)) from None


def describe_target(dsn: str) -> str:
    """`user@host:port/dbname` for messages, from the DSN and libpq's defaults; never the password."""
    try:
        params = conninfo_to_dict(dsn) if dsn else {}
    except psycopg.ProgrammingError:
        return redact_dsn(dsn)
    user = params.get("user") or "(default user)"
    host = params.get("host") or params.get("hostaddr") or "(default host)"
    port = params.get("port") or "5432"
    db = params.get("dbname") or "(default db)"
    return f"{user}@{host}:{port}/{db}"


def connect(
    dsn: str,
    *,
    dbname: str | None = None,
    autocommit: bool = True,
    application_name: str = DEFAULT_APPLICATION_NAME,
    connect_timeout: int = DEFAULT_CONNECT_TIMEOUT,
    pin: Pin = "session",
    **kwargs: Any,
) -> psycopg.Connection[Any]:
    """Open a connection, or raise ConnectError naming the target and the fix.

    pin: how the search_path is made safe (see `Pin` above): "session" (default) pins it to '' before the
    connection is returned; "transaction" leaves that to each transaction (`pinned_transaction`); "off"
    only for PgBouncer's admin console or a cluster pgtool created itself.
    """
    if pin not in ("session", "transaction", "off"):
        raise ValueError(f"pin must be session, transaction or off, not {pin!r}")
    params: dict[str, Any] = {"application_name": application_name}
    params.setdefault("connect_timeout", connect_timeout)
    if dbname is not None:
        params["dbname"] = dbname
    try:
        conninfo = make_conninfo(dsn, **params) if dsn else make_conninfo(**params)
    except psycopg.ProgrammingError as exc:
        raise invalid(dsn, str(exc)) from None
    try:
        conn = psycopg.connect(conninfo, autocommit=autocommit, **kwargs)
    except psycopg.OperationalError as exc:
        detail = " ".join(redact_dsn(str(exc)).split())
        raise ConnectError(
            f"cannot connect to {describe_target(conninfo)}: {detail}", hint=connect_hint(detail)
        ) from None
    if pin == "session":
        try:
            _pin_session(conn)
        except psycopg.Error as exc:
            conn.close()
            detail = " ".join(redact_dsn(str(exc)).split())
            raise ConnectError(
                f"cannot pin search_path on {describe_target(conninfo)}: {detail}",
                hint="connect to PostgreSQL itself (PgBouncer's admin console takes no SQL)",
            ) from None
        except BaseException:
            conn.close()
            raise
    return conn


def _pin_session(conn: psycopg.Connection[Any]) -> None:
    # Outside autocommit the pin opens the caller's first transaction; commit it so a later rollback
    # of the caller's work cannot undo the pin (set_config(..., false) is rolled back with its
    # transaction).
    conn.execute(PIN_SQL)
    if not conn.autocommit:
        conn.commit()


def pin_transaction(conn: psycopg.Connection[Any]) -> None:
    """Pin search_path to '' until the current transaction ends: the first statement of each transaction
    on a `pin="transaction"` connection."""
    conn.execute(PIN_LOCAL_SQL)


@contextlib.contextmanager
def pinned_transaction(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """`conn.transaction()` whose first statement pins search_path to '' for that transaction."""
    with conn.transaction():
        pin_transaction(conn)
        yield


def server_major(conn: psycopg.Connection[Any]) -> int:
    """The server's major version (15, 18, ...)."""
    return conn.info.server_version // 10000
