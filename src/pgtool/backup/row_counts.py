"""Exact row counts of every table whose data a dump carries, for the manifest and the restore check.

"Every table" means ordinary tables and partitions (relkind 'r') outside the system schemas, except
temporary tables and tables that belong to an extension: pg_dump does not dump their rows (extension
configuration tables aside), so counting them would make every restore check fail. Partitioned
parents are not counted: their rows are their partitions'.

The counts go through psql sessions (`pgtool.pg.psql`): they start in ~10 ms and leave the Python
driver unloaded, while backup counts beside pg_dump and verify beside pg_restore.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol

from pgtool.errors import OperationError
from pgtool.pg.psql import Session, identifier

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
ORDER BY 1, 2;
"""


def list_tables(session: Session) -> list[tuple[str, str]]:
    """(schema, table) of every table whose rows a dump carries, sorted."""
    return [(r[0], r[1]) for r in session.rows(TABLES_SQL)]


class Stop(Protocol):
    def is_set(self) -> bool: ...


def count_rows(
    session: Session, tables: list[tuple[str, str]] | None = None, *, stop: Stop | None = None
) -> list[dict[str, Any]]:
    """[{"schema", "name", "rows"}] with exact counts, in the session's current snapshot.

    stop: checked between tables (a threading.Event, say); when set, raises OperationError.
    """
    if tables is None:
        tables = list_tables(session)
    counts = []
    for schema, name in tables:
        if stop is not None and stop.is_set():
            raise OperationError("row counting stopped: the run is being terminated")
        ((rows,),) = session.rows(f"SELECT count(*) FROM {identifier(schema, name)};")
        counts.append({"schema": schema, "name": name, "rows": int(rows)})
    return counts


def qualified(schema: str, name: str) -> str:
    """`schema.table` for messages (quoted where PostgreSQL would need quotes)."""

    def q(ident: str) -> str:
        plain = ident.isidentifier() and ident == ident.lower() and ident.isascii()
        return ident if plain else '"' + ident.replace('"', '""') + '"'

    return f"{q(schema)}.{q(name)}"


SIZES_SQL = """
SELECT n.nspname, c.relname, pg_relation_size(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r';
"""

_DONE = None  # queue sentinel: no more tables


class TableCounter:
    """Exact row counts over up to `jobs` connections, each table counted as soon as it is submitted.

    For a database being restored, where no snapshot needs sharing: `submit()` a table the moment
    its data is committed and it is counted while the restore goes on with other tables and
    indexes, while its pages are still cached; `finish()` then counts whatever was not submitted,
    biggest first, and returns every count. `abandon()` stops taking work (the caller is about to
    drop the database, which ends counts in flight).

    The first worker also reads the table list (and sizes, to order what is left): at the
    first submit of a restore every table exists (pg_restore creates them before loading any data),
    so `finish()` needs no session of its own after the restore.
    """

    def __init__(self, connect: Callable[[], Session], jobs: int) -> None:
        self._connect = connect
        self._jobs = max(1, jobs)
        self._queue: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._submitted: set[tuple[str, str]] = set()
        self._counted: dict[tuple[str, str], int] = {}
        self._errors: list[BaseException] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._catalog: list[tuple[str, str]] = []
        self._sizes: dict[tuple[str, str], int] = {}
        self._catalog_ready = threading.Event()  # also set when a worker failed: finish() then raises

    def submit(self, table: tuple[str, str]) -> None:
        """Count `table` now, in the background (thread-safe; a repeat is ignored)."""
        with self._lock:
            if table in self._submitted or self._stop.is_set():
                return
            self._submitted.add(table)
            self._start_workers()
        self._queue.put(table)

    def finish(self, tables: list[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
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
        """Take no more work; queued tables are skipped (threads end after their current count)."""
        self._stop.set()
        for _ in self._threads:
            self._queue.put(_DONE)

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
            with self._connect() as session:
                if reads_catalog:
                    self._catalog = list_tables(session)
                    self._sizes = {(r[0], r[1]): int(r[2]) for r in session.rows(SIZES_SQL)}
                    self._catalog_ready.set()
                while (table := self._queue.get()) is not _DONE:
                    if self._stop.is_set() or self._errors:
                        continue
                    self._counted[table] = count_rows(session, [table])[0]["rows"]
        except BaseException as exc:  # reported by finish(); a dropped database ends counts in flight
            self._errors.append(exc)
            self._stop.set()
            self._catalog_ready.set()
