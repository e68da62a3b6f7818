"""Exact row counts of every table whose data a dump carries, for the manifest and the restore check.

"Every table" means ordinary tables and partitions (relkind 'r') outside the system schemas, except
temporary tables and tables that belong to an extension: pg_dump does not dump their rows (extension
configuration tables aside), so counting them would make every restore check fail. Partitioned
parents are not counted: their rows are their partitions'.

Counts run on `pgtool.logical.dump_sessions` sessions: names travel as the server's exact bytes, and
`row_security = off` turns a policy that would filter a count into an error, never a wrong number.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

import psycopg
from psycopg import sql

from pgtool.errors import OperationError, error_line
from pgtool.logical.dump_sessions import Ident, is_rls_error, one_row
from pgtool.logical.dumps import display

TABLES_SQL = """
SELECT n.nspname, c.relname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%'
  AND n.nspname NOT LIKE 'pg\\_temp\\_%'
  AND NOT EXISTS (
      SELECT 1 FROM pg_catalog.pg_depend d
      WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""
SIZES_SQL = """
SELECT n.nspname, c.relname, pg_catalog.pg_relation_size(c.oid)
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
"""
_COUNT = sql.SQL("SELECT pg_catalog.count(*) FROM {}")
_NO_FORCE = sql.SQL("ALTER TABLE {} NO FORCE ROW LEVEL SECURITY")

Table = tuple[str, str]
Session = psycopg.Connection[Any]


def list_tables(conn: Session) -> list[Table]:
    """(schema, table) of every table whose rows a dump carries, sorted."""
    return [(s, n) for s, n in conn.execute(TABLES_SQL).fetchall()]


class Stop(Protocol):
    def is_set(self) -> bool: ...


def qualified(schema: str, name: str) -> str:
    """`schema.table` for messages (quoted where PostgreSQL would need quotes, escaped for one line)."""

    def q(ident: str) -> str:
        plain = ident.isidentifier() and ident == ident.lower() and ident.isascii()
        return ident if plain else '"' + ident.replace('"', '""') + '"'

    return display(f"{q(schema)}.{q(name)}")


def count_table(conn: Session, table: Table, *, owned_copy: bool = False) -> int:
    """Exact row count of `table`. Row-level security never filters it silently: the count fails
    (row_security is off), unless `owned_copy` (a throwaway restore, whose tables the role owns) lets
    it lift FORCE ROW LEVEL SECURITY and count again. Raises OperationError."""
    try:
        return int(one_row(conn, _COUNT.format(Ident(*table)))[0])
    except psycopg.Error as exc:
        if not is_rls_error(exc):
            raise OperationError(f"counting rows of {qualified(*table)}: {error_line(exc)}") from None
        if not owned_copy:
            raise OperationError(
                f"cannot count rows of {qualified(*table)}: row-level security applies to this role "
                "(pg_dump fails the same way)",
                hint="back up as a superuser or a role with BYPASSRLS",
            ) from None
    try:
        conn.execute(_NO_FORCE.format(Ident(*table)))
        return int(one_row(conn, _COUNT.format(Ident(*table)))[0])
    except psycopg.Error as exc:
        raise OperationError(
            f"cannot count rows of {qualified(*table)}: row-level security applies to this role "
            f"and it cannot lift it on the restored copy ({error_line(exc)})",
            hint="verify as a superuser, a role with BYPASSRLS, or a role that owns what it restores",
        ) from None


def count_rows(
    conn: Session, tables: list[Table] | None = None, *, stop: Stop | None = None
) -> list[dict[str, Any]]:
    """[{"schema", "name", "rows"}] with exact counts, in the session's current snapshot.

    stop: checked between tables (a threading.Event, say); when set, raises OperationError.
    """
    if tables is None:
        tables = list_tables(conn)
    counts = []
    for schema, name in tables:
        if stop is not None and stop.is_set():
            raise OperationError("row counting stopped")
        counts.append({"schema": schema, "name": name, "rows": count_table(conn, (schema, name))})
    return counts


_DONE = None  # queue sentinel: no more tables


class TableCounter:
    """Exact row counts over up to `jobs` sessions of a restored copy, each table counted as soon as it
    is submitted.

    For a database being restored, where no snapshot needs sharing: `submit()` a table the moment
    its data is committed and it is counted while the restore goes on with other tables and
    indexes, while its pages are still cached; `finish()` then counts whatever was not submitted,
    biggest first, and returns every count. `abandon()` stops taking work and cancels counts in
    flight (the caller is about to drop the database).

    The first worker also reads the table list (and sizes, to order what is left): at the
    first submit of a restore every table exists (pg_restore creates them before loading any data),
    so `finish()` needs no session of its own after the restore.
    """

    def __init__(self, connect: Callable[[], AbstractContextManager[Session]], jobs: int) -> None:
        self._connect = connect
        self._jobs = max(1, jobs)
        self._queue: queue.Queue[Table | None] = queue.Queue()
        self._submitted: set[Table] = set()
        self._counted: dict[Table, int] = {}
        self._errors: list[BaseException] = []
        self._threads: list[threading.Thread] = []
        self._sessions: list[Session] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._catalog: list[Table] = []
        self._sizes: dict[Table, int] = {}
        self._catalog_ready = threading.Event()  # also set when a worker failed: finish() then raises

    def submit(self, table: Table) -> None:
        """Count `table` now, in the background (thread-safe; a repeat is ignored)."""
        with self._lock:
            if table in self._submitted or self._stop.is_set():
                return
            self._submitted.add(table)
            self._start_workers()
        self._queue.put(table)

    def finish(self, tables: list[Table] | None = None) -> list[dict[str, Any]]:
        """[{"schema", "name", "rows"}] for `tables` (None: every table, see `list_tables`), in order.

        Raises the first error a count raised.
        """
        with self._lock:
            self._start_workers()
        self._catalog_ready.wait()
        if self._errors:
            self.abandon()
            raise self._errors[0]
        wanted = self._catalog if tables is None else tables
        for table in sorted(wanted, key=lambda t: -self._sizes.get(t, 0)):
            self.submit(table)
        for _ in self._threads:
            self._queue.put(_DONE)
        for thread in self._threads:
            thread.join()
        if self._errors:
            raise self._errors[0]
        return [{"schema": s, "name": n, "rows": self._counted[(s, n)]} for s, n in wanted]

    def abandon(self) -> None:
        """Take no more work; queued tables are skipped and running counts cancelled."""
        with self._lock:
            already = self._stop.is_set()
            self._stop.set()
            sessions = list(self._sessions)
        if not already:
            for _ in self._threads:
                self._queue.put(_DONE)
        for conn in sessions:
            # The session may be closing already; the drop that follows ends it anyway.
            with contextlib.suppress(Exception):
                conn.cancel_safe(timeout=5)

    def _start_workers(self) -> None:  # with self._lock held
        while len(self._threads) < self._jobs:
            first = not self._threads
            thread = threading.Thread(
                target=self._work, args=(first,), name=f"count-{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _work(self, reads_catalog: bool) -> None:
        try:
            with self._connect() as conn:
                with self._lock:
                    self._sessions.append(conn)
                try:
                    if reads_catalog:
                        self._catalog = list_tables(conn)
                        self._sizes = {(s, n): int(size) for s, n, size in conn.execute(SIZES_SQL).fetchall()}
                        self._catalog_ready.set()
                    while (table := self._queue.get()) is not _DONE:
                        if self._stop.is_set() or self._errors:
                            continue
                        self._counted[table] = count_table(conn, table, owned_copy=True)
                finally:
                    with self._lock:
                        self._sessions.remove(conn)
        except BaseException as exc:  # reported by finish(); a dropped database ends counts in flight
            self._errors.append(exc)
            self._stop.set()
            self._catalog_ready.set()
