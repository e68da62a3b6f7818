"""Advisory-lock keys for pgtool's schema jobs.

Keys use the two-int form `(class, object)`: the class says which job (so partitions and refresh-mv never
collide with each other or with an application's own single-bigint keys), the object is the table's or
view's OID mapped into int4. Only transaction-level locks are used: they end with the transaction, so a
crashed run never leaves one behind, and they work behind PgBouncer in transaction pooling mode, where a
session lock would be held by whichever client next gets the server connection.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg

from pgtool.errors import UsageError

PARTITIONS_LOCK_CLASS = 0x70677401
REFRESH_MV_LOCK_CLASS = 0x70677402

# OIDs are uint32; shifting by 2^31 maps them one-to-one onto int4.
_OBJECT_KEY_SQL = "(%s::pg_catalog.oid::pg_catalog.int8 - 2147483648)::pg_catalog.int4"


def xact_lock(conn: psycopg.Connection[Any], lock_class: int, oid: int) -> None:
    """Wait for the job's lock on `oid` until the current transaction ends."""
    conn.execute(f"SELECT pg_catalog.pg_advisory_xact_lock(%s, {_OBJECT_KEY_SQL})", (lock_class, oid))


def try_xact_lock(conn: psycopg.Connection[Any], lock_class: int, oid: int) -> bool:
    """Take the job's lock on `oid` for the current transaction if free; False at once if not."""
    row = conn.execute(
        f"SELECT pg_catalog.pg_try_advisory_xact_lock(%s, {_OBJECT_KEY_SQL})", (lock_class, oid)
    ).fetchone()
    return bool(row and row[0])


_TIMEOUT = re.compile(r"^\s*(\d+)\s*(ms|s|min|h)?\s*$")


def check_lock_timeout(text: str) -> str:
    """`text` if it is a PostgreSQL lock_timeout value pgtool accepts (`500ms`, `5s`, `2min`, `1h`, or a
    bare number of milliseconds); UsageError otherwise, before anything is attempted."""
    match = _TIMEOUT.match(text)
    if not match or int(match.group(1)) == 0:
        raise UsageError(
            f"invalid lock timeout {text!r}", hint="use e.g. 500ms, 5s or 2min (0 would wait forever)"
        )
    return f"{match.group(1)}{match.group(2) or 'ms'}"
