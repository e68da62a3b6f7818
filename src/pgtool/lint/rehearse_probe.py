"""What a rehearsed statement does to other sessions: a light probe load and a pg_locks sampler.

Each probe is a thread with its own session running one short query after another on the table the
statement touches, with a short lock_timeout: an attempt that hits it was blocked for that long. The
reader runs `SELECT ... LIMIT 1`; the writer updates one row to itself in a transaction it rolls back
(the lock and row lock an application's UPDATE needs, no change kept). The sampler polls pg_locks
from its own session for the statement's backend pid, so it sees locks while the statement runs,
including the ones it waits for.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from pgtool.errors import error_line
from pgtool.pg.conn import connect

PROBE_LOCK_TIMEOUT_MS = 50  # the probe's resolution: a shorter wait goes unseen
PROBE_PAUSE_S = 0.01  # between attempts: a light load, not a benchmark
SAMPLE_PAUSE_S = 0.005
APPLICATION = "pgtool-rehearse"

LOCKS_SQL = """
SELECT l.relation::pg_catalog.int8, l.mode, l.granted, n.nspname, c.relname
FROM pg_catalog.pg_locks l
LEFT JOIN pg_catalog.pg_class c ON c.oid = l.relation
LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE l.pid = %s AND l.locktype = 'relation'
  AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
                    WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
  AND (n.nspname IS NULL OR (n.nspname OPERATOR(pg_catalog.<>) ALL (ARRAY['pg_catalog', 'information_schema'])
       AND n.nspname NOT LIKE 'pg\\_toast%%'))
"""


@dataclass(frozen=True)
class Lock:
    oid: int
    mode: str  # as pg_locks names it: AccessExclusiveLock
    granted: bool
    name: str | None  # schema.relation; None for a relation not committed yet (created by the statement)


class Sampler(threading.Thread):
    """Polls pg_locks for one backend until stopped; `locks` collects every distinct lock seen."""

    def __init__(self, conn: psycopg.Connection[Any], pid: int) -> None:
        super().__init__(name="pgtool-rehearse-locks", daemon=True)
        self.conn = conn
        self.pid = pid
        self.locks: set[Lock] = set()
        self.stopping = threading.Event()
        self.error: str | None = None

    def sample(self) -> None:
        for oid, mode, granted, schema, name in self.conn.execute(LOCKS_SQL, (self.pid,)).fetchall():
            self.locks.add(Lock(int(oid), mode, bool(granted), f"{schema}.{name}" if name else None))

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                self.sample()
                self.stopping.wait(SAMPLE_PAUSE_S)
        except psycopg.Error as exc:
            self.error = error_line(exc)

    def stop(self) -> None:
        self.stopping.set()
        if self.ident is not None:  # started
            self.join()


@dataclass
class ProbeResult:
    attempts: int = 0
    blocked_s: float = 0.0  # total time of the attempts that hit lock_timeout
    timeouts: int = 0
    errors: list[str] = field(default_factory=list)


class Probe(threading.Thread):
    """One session querying `table` in a loop until stopped (`kind` "read" or "write")."""

    def __init__(self, dsn: str, table: sql.Composable, kind: str, column: str | None) -> None:
        super().__init__(name=f"pgtool-rehearse-{kind}", daemon=True)
        self.dsn = dsn
        self.kind = kind
        self.result = ProbeResult()
        self.ready = threading.Event()  # set after the first attempt (or a failure to connect)
        self.stopping = threading.Event()
        if kind == "read":
            self.query: sql.Composed = sql.SQL("SELECT 1 FROM ONLY {} LIMIT 1").format(table)
        elif column is not None:
            col = sql.Identifier(column)
            self.query = sql.SQL(
                "UPDATE ONLY {t} SET {c} = {c} WHERE ctid = (SELECT ctid FROM ONLY {t} LIMIT 1)"
            ).format(t=table, c=col)
        else:  # no column an UPDATE may set: take the lock a writer needs
            self.query = sql.SQL("LOCK TABLE ONLY {} IN ROW EXCLUSIVE MODE").format(table)

    def run(self) -> None:
        try:
            conn = connect(self.dsn, application_name=APPLICATION)
        except Exception as exc:  # reported, never raised from a thread
            self.result.errors.append(f"probe could not connect: {exc}")
            self.ready.set()
            return
        try:
            conn.execute(
                "SELECT pg_catalog.set_config('lock_timeout', %s, false), "
                "pg_catalog.set_config('statement_timeout', '10s', false)",
                (f"{PROBE_LOCK_TIMEOUT_MS}ms",),
            )
            while not self.stopping.is_set():
                self._attempt(conn)
                self.ready.set()
                self.stopping.wait(PROBE_PAUSE_S)
        except psycopg.Error as exc:
            self.result.errors.append(error_line(exc))
        finally:
            self.ready.set()
            conn.close()

    def _attempt(self, conn: psycopg.Connection[Any]) -> None:
        start = time.monotonic()
        try:
            with conn.transaction(force_rollback=True):
                conn.execute(self.query)
        except psycopg.errors.LockNotAvailable:
            self.result.blocked_s += time.monotonic() - start
            self.result.timeouts += 1
        except psycopg.errors.QueryCanceled:  # statement_timeout: blocked on something else
            self.result.blocked_s += time.monotonic() - start
            self.result.timeouts += 1
        except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as exc:
            # The statement dropped or renamed what the probe reads: nothing left to measure.
            self.result.errors.append(error_line(exc))
            self.stopping.set()
        self.result.attempts += 1

    def stop(self) -> None:
        self.stopping.set()
        if self.ident is not None:  # started
            self.join()
