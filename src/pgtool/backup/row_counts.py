"""Exact row counts of every table whose data a dump carries, for the manifest and the restore check.

"Every table" means ordinary tables and partitions (relkind 'r') outside the system schemas, except
temporary tables and tables that belong to an extension: pg_dump does not dump their rows (extension
configuration tables aside), so counting them would make every restore check fail. Partitioned
parents are not counted: their rows are their partitions'.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from psycopg import sql

from pgtool.errors import OperationError

TABLES_SQL = """
SELECT n.nspname, c.relname
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%'
  AND n.nspname NOT LIKE 'pg\\_temp\\_%'
  AND NOT EXISTS (
      SELECT 1 FROM pg_depend d
      WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""


def list_tables(conn: Any) -> list[tuple[str, str]]:
    """(schema, table) of every table whose rows a dump carries, sorted."""
    return [(r[0], r[1]) for r in conn.execute(TABLES_SQL).fetchall()]


def count_rows(
    conn: Any, tables: list[tuple[str, str]] | None = None, *, stop: threading.Event | None = None
) -> list[dict[str, Any]]:
    """[{"schema", "name", "rows"}] with exact counts, in the connection's current snapshot.

    stop: checked between tables; when set, raises OperationError (the run is being terminated).
    """
    if tables is None:
        tables = list_tables(conn)
    counts = []
    for schema, name in tables:
        if stop is not None and stop.is_set():
            raise OperationError("row counting stopped: the run is being terminated")
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name))
        (rows,) = conn.execute(query).fetchone()
        counts.append({"schema": schema, "name": name, "rows": int(rows)})
    return counts


def qualified(schema: str, name: str) -> str:
    """`schema.table` for messages (quoted where PostgreSQL would need quotes)."""

    def q(ident: str) -> str:
        plain = ident.isidentifier() and ident == ident.lower() and ident.isascii()
        return ident if plain else '"' + ident.replace('"', '""') + '"'

    return f"{q(schema)}.{q(name)}"


def count_rows_parallel(
    connect: Callable[[], Any], tables: list[tuple[str, str]], jobs: int
) -> list[dict[str, Any]]:
    """count_rows over up to `jobs` connections from `connect()`, biggest tables first.

    For a freshly restored database, where no snapshot needs sharing: the counts take the time of
    the biggest table rather than the sum. Results come back in the order of `tables`.
    """
    if jobs <= 1 or len(tables) <= 1:
        with connect() as conn:
            return count_rows(conn, tables)
    with connect() as conn:
        sizes = dict(
            ((r[0], r[1]), r[2])
            for r in conn.execute(
                "SELECT n.nspname, c.relname, pg_relation_size(c.oid) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r'"
            ).fetchall()
        )
    todo = sorted(tables, key=lambda t: -sizes.get(t, 0))
    lock = threading.Lock()
    counted: dict[tuple[str, str], int] = {}

    def worker() -> None:
        with connect() as conn:
            while True:
                with lock:
                    if not todo:
                        return
                    table = todo.pop(0)
                counted[table] = count_rows(conn, [table])[0]["rows"]

    pool = ThreadPoolExecutor(max_workers=min(jobs, len(tables)), thread_name_prefix="count")
    futures = [pool.submit(worker) for _ in range(min(jobs, len(tables)))]
    try:
        for future in futures:
            future.result()
    finally:
        # On an error or SIGTERM do not wait for the other counts: dropping the database ends them.
        pool.shutdown(wait=False, cancel_futures=True)
    return [{"schema": s, "name": n, "rows": counted[(s, n)]} for s, n in tables]
