"""psycopg connections with pgtool's conventions.

- `application_name` is `pgtool` (reporting uses `pgtool-reporting`) so operators see who we are;
- connection failures become ConnectError (exit 3) with one line saying what to fix, password removed;
- `connect_timeout` defaults to 10 s: a CronJob must not hang on a dead host.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgtool.config import redact_dsn
from pgtool.errors import ConnectError, UsageError
from pgtool.pg.conninfo import connect_hint

DEFAULT_APPLICATION_NAME = "pgtool"
DEFAULT_CONNECT_TIMEOUT = 10


def with_params(dsn: str, **overrides: Any) -> str:
    """`dsn` with some parameters replaced (e.g. dbname), as a conninfo string."""
    try:
        return make_conninfo(dsn, **{k: v for k, v in overrides.items() if v is not None})
    except psycopg.ProgrammingError as exc:
        raise UsageError(f"invalid DSN {redact_dsn(dsn)!r}: {redact_dsn(str(exc))}") from None


def dsn_params(dsn: str) -> dict[str, Any]:
    """The DSN's parameters as a dict (password included: do not log it)."""
    try:
        return conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise UsageError(f"invalid DSN {redact_dsn(dsn)!r}: {redact_dsn(str(exc))}") from None


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
    **kwargs: Any,
) -> psycopg.Connection[Any]:
    """Open a connection, or raise ConnectError naming the target and the fix."""
    params: dict[str, Any] = {"application_name": application_name}
    params.setdefault("connect_timeout", connect_timeout)
    if dbname is not None:
        params["dbname"] = dbname
    try:
        conninfo = make_conninfo(dsn, **params) if dsn else make_conninfo(**params)
    except psycopg.ProgrammingError as exc:
        raise UsageError(f"invalid DSN {redact_dsn(dsn)!r}: {redact_dsn(str(exc))}") from None
    try:
        return psycopg.connect(conninfo, autocommit=autocommit, **kwargs)
    except psycopg.OperationalError as exc:
        detail = " ".join(redact_dsn(str(exc)).split())
        raise ConnectError(
            f"cannot connect to {describe_target(conninfo)}: {detail}", hint=connect_hint(detail)
        ) from None


def server_major(conn: psycopg.Connection[Any]) -> int:
    """The server's major version (15, 18, ...)."""
    return conn.info.server_version // 10000
