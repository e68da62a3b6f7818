"""psycopg sessions for `backup` and `verify`: names read and written as the server's exact bytes.

A name in the catalog is whatever bytes its creator sent: in a SQL_ASCII database, any 8-bit bytes.
To carry such names exactly from one session into another (the manifest, a count, the restored copy),
each session here:
- talks in the database's own encoding (`client_encoding` = `server_encoding`, so nothing converts);
- loads `name` (and `text`) columns as str decoded from that encoding with `surrogateescape`
  (SQL_ASCII read as UTF-8), so bytes that are not valid text survive as lone surrogates and
  encode back unchanged;
- quotes them with `Ident`, a psycopg.sql Composable that encodes the same way and escapes through
  libpq (what `sql.Identifier` does, which would refuse such bytes);
- runs with `row_security = off`, so a row-level security policy makes a count fail instead of
  silently filtering it (pg_dump does the same).
Sessions are registered while open: `cancel_all()` cancels their running statements on SIGTERM.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql
from psycopg.adapt import Loader
from psycopg.pq import Escaping

from pgtool.pg.conn import connect

_OPEN: set[psycopg.Connection[Any]] = set()
_OPEN_LOCK = threading.Lock()


def name_codec(conn: psycopg.BaseConnection[Any]) -> str:
    """The Python codec names travel in on `conn` (SQL_ASCII, which psycopg calls ascii, as UTF-8)."""
    codec = conn.info.encoding
    return "utf-8" if codec == "ascii" else codec


class _NameLoader(Loader):
    """`name` values as str, undecodable bytes kept as surrogates (see the module docstring)."""

    def __init__(self, oid: int, context: Any = None) -> None:
        super().__init__(oid, context)
        self._codec = name_codec(self.connection) if self.connection is not None else "utf-8"

    def load(self, data: Any) -> str:
        return bytes(data).decode(self._codec, "surrogateescape")


class Ident(sql.Composable):
    """A (schema-qualified) identifier from names loaded by `_NameLoader`, quoted by libpq."""

    def __init__(self, *parts: str) -> None:
        super().__init__(parts)

    def as_bytes(self, context: Any = None) -> bytes:
        conn = context.connection if context is not None else None
        if conn is None:
            raise TypeError("Ident needs a connection to quote with")
        codec, esc = name_codec(conn), Escaping(conn.pgconn)
        return b".".join(esc.escape_identifier(p.encode(codec, "surrogateescape")) for p in self._obj)


@contextlib.contextmanager
def session(
    dsn: str, *, dbname: str | None = None, application_name: str
) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection set up as the module docstring says; closed (and unregistered) after."""
    with connect(dsn, dbname=dbname, application_name=application_name) as conn:
        # text too: on a SQL_ASCII connection psycopg would return bytes for it.
        for type_name in ("name", "text"):
            conn.adapters.register_loader(type_name, _NameLoader)
        conn.execute(
            "SELECT pg_catalog.set_config('client_encoding',"
            " pg_catalog.current_setting('server_encoding'), false),"
            " pg_catalog.set_config('row_security', 'off', false)"
        )
        with _OPEN_LOCK:
            _OPEN.add(conn)
        try:
            yield conn
        finally:
            with _OPEN_LOCK:
                _OPEN.discard(conn)


def one_row(conn: psycopg.Connection[Any], query: Any, params: Any = None) -> tuple[Any, ...]:
    """The single row `query` returns (OperationError if it returns none)."""
    row = conn.execute(query, params).fetchone()
    if row is None:
        from pgtool.errors import OperationError

        raise OperationError("a query that returns one row returned none")
    return tuple(row)


def cancel_all() -> None:
    """Cancel whatever statement each open session is running (the run is being terminated)."""
    with _OPEN_LOCK:
        conns = list(_OPEN)
    for conn in conns:
        with contextlib.suppress(Exception):
            conn.cancel_safe(timeout=5)


def is_rls_error(exc: BaseException) -> bool:
    """The statement failed because row-level security would have filtered it (row_security = off)."""
    return isinstance(exc, psycopg.errors.InsufficientPrivilege) and "row-level security" in str(exc)
