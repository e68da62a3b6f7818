"""Refresh materialized views without blocking their readers, and without piling up overlapping runs.

Per view, one transaction:
    SET LOCAL lock_timeout                      (never queue writers/readers behind a lock we wait for)
    pg_try_advisory_xact_lock(refresh-mv, oid)  (false: another run is refreshing it -> skipped at once)
    REFRESH MATERIALIZED VIEW CONCURRENTLY v    (EXCLUSIVE lock: reads go on)
A view that was never populated gets a plain REFRESH (CONCURRENTLY refuses it; nobody can read it yet
anyway). A populated view without a usable unique index (plain columns, no WHERE, valid) cannot be refreshed
concurrently: it is reported with the fix, and refreshed with a plain, reader-blocking REFRESH only when
`allow_blocking` is set. Everything is transaction-scoped (SET LOCAL, xact advisory lock), so this works
through PgBouncer in transaction pooling mode. For the same reason the connection is opened with
pin="transaction" and every statement runs in a transaction that first pins search_path to ''
(`pgtool.pg.conn.pinned_transaction`): a view's owner must not get its functions run by us.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from pgtool.errors import UsageError, error_line
from pgtool.obs.logging import get_logger
from pgtool.pg.conn import pinned_transaction
from pgtool.schema.locks import REFRESH_MV_LOCK_CLASS, try_xact_lock

# Outcomes of one view's refresh.
REFRESHED = "refreshed"  # concurrently
POPULATED = "populated"  # plain refresh of a never-populated view
BLOCKING = "refreshed-blocking"  # plain refresh allowed by --allow-blocking
SKIPPED = "skipped"  # another run holds the view's lock
NEEDS_INDEX = "needs-unique-index"
FAILED = "failed"
OK_OUTCOMES = (REFRESHED, POPULATED, BLOCKING, SKIPPED)


@dataclass(frozen=True)
class View:
    oid: int
    schema: str
    name: str
    populated: bool
    has_unique_index: bool

    @property
    def display(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)


@dataclass
class ViewOutcome:
    view: str
    outcome: str
    seconds: float = 0.0
    detail: str = ""
    finished_at: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome in OK_OUTCOMES


_VIEWS_SQL = """
SELECT c.oid, n.nspname, c.relname, c.relispopulated,
       EXISTS (SELECT 1 FROM pg_catalog.pg_index i
               WHERE i.indrelid = c.oid AND i.indisunique AND i.indisvalid
                 AND i.indpred IS NULL AND i.indexprs IS NULL)
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'm'
"""


def list_views(conn: psycopg.Connection[Any]) -> list[View]:
    """Every materialized view outside the system schemas."""
    with pinned_transaction(conn):
        rows = conn.execute(
            _VIEWS_SQL + " AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 2, 3"
        ).fetchall()
    return [View(*row) for row in rows]


def resolve_views(conn: psycopg.Connection[Any], names: list[str]) -> list[View]:
    """The views named (`schema.name`, or `name` looked up in the session's search_path schemas, in
    order); UsageError for unknown names.

    Only the schema names of the session's search_path (the database owner may have set it) are read,
    with a fully qualified call that runs nothing else; the lookups themselves run pinned.
    """
    path_row = conn.execute("SELECT pg_catalog.current_schemas(false)").fetchone()
    path = [str(s) for s in path_row[0]] if path_row and path_row[0] else []
    views = []
    with pinned_transaction(conn):
        for name in names:
            parts = _name_parts(conn, name)
            schemas = parts[:1] if len(parts) == 2 else (path if len(parts) == 1 else [])
            row = None
            for schema in schemas:
                row = conn.execute(
                    _VIEWS_SQL + " AND n.nspname = %s AND c.relname = %s", (schema, parts[-1])
                ).fetchone()
                if row is not None:
                    break
            if row is None:
                raise UsageError(f"materialized view {name!r} not found", hint="check the name, or use --all")
            views.append(View(*row))
    return views


def _name_parts(conn: psycopg.Connection[Any], name: str) -> list[str]:
    """`name` split as SQL would (quotes kept, case folded), or [] when it is not a valid name."""
    try:
        with conn.transaction():  # a savepoint: parse_ident raises on a malformed name
            row = conn.execute("SELECT pg_catalog.parse_ident(%s)", (name,)).fetchone()
    except psycopg.Error:
        return []
    return [str(p) for p in row[0]] if row and row[0] else []


def refresh(
    conn: psycopg.Connection[Any],
    views: list[View],
    *,
    allow_blocking: bool = False,
    lock_timeout: str = "5s",
) -> list[ViewOutcome]:
    """Refresh each view in its own transaction (see the module docstring); never raises per view."""
    log = get_logger()
    conn.prepare_threshold = None  # server-side prepared statements break under PgBouncer transaction pooling
    outcomes = []
    for view in views:
        start = time.monotonic()
        outcome = _refresh_one(conn, view, allow_blocking=allow_blocking, lock_timeout=lock_timeout)
        outcome.seconds = round(time.monotonic() - start, 3)
        outcome.finished_at = time.time()
        event = log.info if outcome.ok else log.error
        if outcome.outcome == SKIPPED:
            event = log.warning
        event(
            f"view {outcome.outcome}",
            view=outcome.view,
            duration_s=outcome.seconds,
            detail=outcome.detail or None,
        )
        outcomes.append(outcome)
    return outcomes


def _refresh_one(
    conn: psycopg.Connection[Any], view: View, *, allow_blocking: bool, lock_timeout: str
) -> ViewOutcome:
    try:
        with pinned_transaction(conn):
            conn.execute("SELECT pg_catalog.set_config('lock_timeout', %s, true)", (lock_timeout,))
            if not try_xact_lock(conn, REFRESH_MV_LOCK_CLASS, view.oid):
                return ViewOutcome(view.display, SKIPPED, detail="another run is refreshing it")
            # Re-read under the lock: another run may have populated it or an index may have appeared.
            row = conn.execute(_VIEWS_SQL + " AND c.oid = %s", (view.oid,)).fetchone()
            if row is None:
                return ViewOutcome(view.display, FAILED, detail="the view was dropped")
            current = View(*row)
            if not current.populated:
                conn.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}").format(current.ident))
                return ViewOutcome(view.display, POPULATED, detail="never populated: plain refresh")
            if not current.has_unique_index:
                if not allow_blocking:
                    return ViewOutcome(
                        view.display,
                        NEEDS_INDEX,
                        detail=(
                            "no unique index on plain columns, so it cannot be refreshed CONCURRENTLY; fix: "
                            f"CREATE UNIQUE INDEX CONCURRENTLY ON {current.display} "
                            "(<columns that identify a row>)"
                            " - or pass --allow-blocking to refresh it while blocking its readers"
                        ),
                    )
                conn.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}").format(current.ident))
                return ViewOutcome(
                    view.display, BLOCKING, detail="no usable unique index: readers were blocked"
                )
            conn.execute(sql.SQL("REFRESH MATERIALIZED VIEW CONCURRENTLY {}").format(current.ident))
            return ViewOutcome(view.display, REFRESHED)
    except psycopg.errors.LockNotAvailable:
        return ViewOutcome(
            view.display,
            FAILED,
            detail=f"lock not granted within lock_timeout {lock_timeout} (another session holds it)",
        )
    except psycopg.Error as exc:
        return ViewOutcome(view.display, FAILED, detail=error_line(exc))


def push_view_metrics(url: str, outcomes: list[ViewOutcome], *, timeout: float = 10.0) -> None:
    """Push each refreshed view's duration and success time under job="pgtool-refresh-mv", view=<name>.

    One grouping key per view, not the run's: a Pushgateway POST replaces a metric name's every series in
    its group, so a run that skips view B must not erase B's last success time pushed by an earlier run.
    Push failures are logged, never fatal.
    """
    from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway

    from pgtool.obs.metrics import job_name

    for o in outcomes:
        if o.outcome not in (REFRESHED, POPULATED, BLOCKING):
            continue
        registry = CollectorRegistry()
        Gauge(
            "pgtool_refresh_mv_duration_seconds", "How long the view's refresh took", registry=registry
        ).set(o.seconds)
        Gauge(
            "pgtool_refresh_mv_last_success_timestamp_seconds",
            "When the view was last refreshed",
            registry=registry,
        ).set(o.finished_at)
        try:
            pushadd_to_gateway(
                url,
                job=job_name("refresh-mv"),
                grouping_key={"view": o.view},
                registry=registry,
                timeout=timeout,
            )
        except Exception as exc:  # transport failures: metrics never fail a refresh
            get_logger().warning("metrics push failed", pushgateway=url, view=o.view, error=str(exc))
