"""Monthly range partitions kept ahead, the low-lock way, with optional retention.

For a table already `PARTITION BY RANGE (<one column>)` of type timestamptz, timestamp or date:

- every month from `since` (default: the current month) through `ahead` months past the current one gets a
  partition `<table>_pYYYY_MM`, and the table gets a DEFAULT partition `<table>_default` if it has none;
- month boundaries are UTC midnights whatever the session TimeZone: the bounds are literals with an explicit
  `+00` offset, and each transaction runs with `SET LOCAL TimeZone = 'UTC'` so bounds read back from the
  catalogue are UTC too;
- a partition is created standalone (`LIKE parent INCLUDING ALL EXCLUDING IDENTITY`), given a CHECK matching
  its range, ATTACHed (SHARE UPDATE EXCLUSIVE on the parent, and no validation scan thanks to the CHECK),
  and the CHECK dropped. `CREATE TABLE ... PARTITION OF` would take ACCESS EXCLUSIVE on the parent;
- rows already in the DEFAULT partition for that month move into the new partition inside the same
  transaction (the DEFAULT partition is write-locked meanwhile, reads continue), in batches of heap pages
  so each batch reads only its own pages. Either everything moves and the partition is attached, or the
  transaction rolls back and nothing changed: rows are never lost or duplicated;
- one transaction per partition, each taking a transaction-level advisory lock on the table first and
  re-reading the catalogue under it, so concurrent runs serialise and the later one finds nothing to do;
- retention: non-DEFAULT partitions whose range ends on or before the first day of the month
  `retention_months` before the current one are detached (default) or dropped.

Every transaction first pins search_path to '' for itself (the connection is opened with pin="transaction":
partitions works through PgBouncer in transaction pooling mode). The catalogue reads and the DDL live in
`partition_catalog`, the move out of DEFAULT and its safety checks in `partition_moves`; one `_Run` holds
what a run shares (connection, table, options, result).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from pgtool.errors import OperationError, UsageError, error_line
from pgtool.obs.logging import get_logger
from pgtool.pg.conn import pin_transaction
from pgtool.schema.locks import PARTITIONS_LOCK_CLASS, xact_lock

if TYPE_CHECKING:
    from pgtool.obs.metrics import RunReport
from pgtool.schema.partition_catalog import (
    Child,
    PartitionedTable,
    add_months,
    create_statements,
    current_month,
    list_children,
    midnight,
    parse_month,
    partition_name,
    resolve_table,
)
from pgtool.schema.partition_moves import move_from_default

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "MOVE_BATCH_PAGES",
    "PartitionsResult",
    "add_months",
    "current_month",
    "maintain_partitions",
    "parse_month",
    "partition_name",
    "plan_window",
]

DEFAULT_LOCK_TIMEOUT = "10s"
MOVE_BATCH_PAGES = 1024  # 8 MB of heap per batch
# Bounds on the window, checked before connecting: absurd values must fail at once with one line, not
# with an OverflowError from date arithmetic, nor by creating thousands of partitions.
MAX_AHEAD = 120  # months: ten years of partitions ahead
MAX_RETENTION_MONTHS = 1200
MAX_MONTHS = 1200  # partitions one run may create (--since far in the past)


@dataclass
class PartitionsResult:
    """What a run did (or, with dry_run, would do)."""

    table: str
    dry_run: bool = False
    created: list[str] = field(default_factory=list)
    in_place: list[str] = field(default_factory=list)
    covered_elsewhere: list[str] = field(default_factory=list)  # "2026_01 by orders_2026" messages
    default_created: str | None = None
    moved_rows: dict[str, int] = field(default_factory=dict)
    detached: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    ddl: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.default_created or self.detached or self.dropped)


def plan_window(
    *, ahead: int, since: date | None, retention_months: int | None, now: datetime | None = None
) -> tuple[date, date, date | None]:
    """(first month wanted, last month wanted, retention cutoff or None); UsageError for values that
    cannot work. Pure: the CLI calls it before connecting."""
    if not 0 <= ahead <= MAX_AHEAD:
        raise UsageError(f"--ahead must be between 0 and {MAX_AHEAD} months, not {ahead}")
    if retention_months is not None and not 1 <= retention_months <= MAX_RETENTION_MONTHS:
        raise UsageError(
            f"--retention-months must be between 1 and {MAX_RETENTION_MONTHS}, not {retention_months}"
        )
    this_month = current_month(now)
    first = (since or this_month).replace(day=1)
    last = add_months(this_month, ahead)
    if first > last:
        raise UsageError(f"--since {first:%Y-%m} is after the last month wanted ({last:%Y-%m})")
    span = (last.year - first.year) * 12 + last.month - first.month + 1
    if span > MAX_MONTHS:
        raise UsageError(
            f"--since {first:%Y-%m} asks for {span} monthly partitions (at most {MAX_MONTHS} per run)",
            hint="move --since forward",
        )
    cutoff = add_months(this_month, -retention_months) if retention_months else None
    if cutoff and first < cutoff:
        raise UsageError(
            f"--since {first:%Y-%m} is older than the retention window (partitions before {cutoff:%Y-%m} go)",
            hint="raise --retention-months or move --since forward",
        )
    return first, last, cutoff


def maintain_partitions(
    conn: psycopg.Connection[Any],
    table: str,
    *,
    ahead: int = 3,
    since: date | None = None,
    retention_months: int | None = None,
    drop: bool = False,
    dry_run: bool = False,
    now: datetime | None = None,
    lock_timeout: str = DEFAULT_LOCK_TIMEOUT,
    batch_pages: int = MOVE_BATCH_PAGES,
    report: RunReport | None = None,
) -> PartitionsResult:
    """Make sure the monthly partitions of `table` exist (and apply retention). See the module docstring.

    conn: autocommit connection. table: 'schema.table'. since: first month wanted (first day of a month;
    default the current UTC month). now: the clock (tests). lock_timeout: per transaction, a PostgreSQL
    interval; a run that cannot get its locks in time fails (exit 1) rather than queueing writers behind it.
    Raises UsageError for a table or arguments that cannot work, OperationError when DDL fails (that
    partition's transaction rolled back; partitions created before it stay). report: gets
    pgtool_partitions_created, pgtool_partitions_future_count and pgtool_partitions_default_rows (not on a
    dry run).
    """
    first, last, cutoff = plan_window(ahead=ahead, since=since, retention_months=retention_months, now=now)
    if not conn.autocommit:
        raise UsageError("maintain_partitions needs an autocommit connection (it commits per partition)")
    log = get_logger().bind(table=table)

    try:
        runner = _Run(conn, table, lock_timeout, dry_run, batch_pages, log)
        result = runner.run(first, last, cutoff, drop)
        # What the alerts watch, read back after the run (a dry run changed nothing worth reporting).
        census = None if report is None or dry_run else runner.census(add_months(current_month(now), 1))
    except psycopg.errors.LockNotAvailable:
        raise OperationError(
            f"could not lock {table} (or one of its partitions) within lock_timeout {lock_timeout}",
            hint="a long transaction holds a conflicting lock; retry later or raise --lock-timeout",
        ) from None
    except psycopg.Error as exc:
        detail = error_line(exc)
        raise OperationError(f"partition maintenance of {table} failed: {detail}") from None
    if report is not None and not dry_run:
        report.gauge(
            "pgtool_partitions_created",
            "Partitions created by the last run",
            len(result.created),
            table=result.table,
        )
    if report is not None and census is not None:
        future, default_rows = census
        report.gauge(
            "pgtool_partitions_future_count",
            "Attached partitions starting on or after the first day of next month (UTC), after the last run",
            future,
            table=result.table,
        )
        report.gauge(
            "pgtool_partitions_default_rows",
            "Rows left in the DEFAULT partition after the last run (0 without one)",
            default_rows,
            table=result.table,
        )
    return result


@dataclass
class _Run:
    """One run over one table: the connection, the options and the result its steps share."""

    conn: psycopg.Connection[Any]
    table_name: str
    lock_timeout: str
    dry_run: bool
    batch_pages: int
    log: Any
    table: PartitionedTable = field(init=False)  # resolved by run()
    result: PartitionsResult = field(init=False)

    def run(self, first: date, last: date, cutoff: date | None, drop: bool) -> PartitionsResult:
        with self.conn.transaction():
            self.begin()
            self.table = resolve_table(self.conn, self.table_name)
            children = list_children(self.conn, self.table)
        self.result = PartitionsResult(table=self.table.display, dry_run=self.dry_run)
        self.ensure_default(children)
        month = first
        while month <= last:
            self.ensure_month(month)
            month = add_months(month, 1)
        if cutoff:
            self.apply_retention(cutoff, drop)
        return self.result

    def begin(self) -> None:
        """The first statements of every transaction: search_path pinned to '' for this transaction
        before anything else runs (see pgtool.pg.conn), then UTC and the lock timeout."""
        pin_transaction(self.conn)
        self.conn.execute("SET LOCAL TimeZone = 'UTC'")
        self.conn.execute("SELECT pg_catalog.set_config('lock_timeout', %s, true)", (self.lock_timeout,))

    def execute(self, stmt: sql.SQL | sql.Composed) -> Any:
        """Record `stmt` in the result's DDL, and run it unless this is a dry run."""
        self.result.ddl.append(stmt.as_string(self.conn) + ";")
        return None if self.dry_run else self.conn.execute(stmt)

    def lock_table(self) -> None:
        """Serialise with concurrent runs; everything after it is re-read under the lock."""
        xact_lock(self.conn, PARTITIONS_LOCK_CLASS, self.table.oid)

    def ensure_default(self, children: list[Child]) -> None:
        if any(c.is_default for c in children):
            return
        table = self.table
        name = f"{table.name}_default"
        stmt = sql.SQL("CREATE TABLE {} PARTITION OF {} DEFAULT").format(table.child_ident(name), table.ident)
        if self.dry_run:
            self.execute(stmt)
            self.result.default_created = name
            return
        with self.conn.transaction():
            self.begin()
            self.lock_table()
            if any(c.is_default for c in list_children(self.conn, table)):
                return
            self.refuse_name_clash(name)
            self.execute(stmt)
        self.result.default_created = name
        self.log.info("default partition created", partition=name)

    def refuse_name_clash(self, name: str) -> None:
        row = self.conn.execute(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s",
            (self.table.schema, name),
        ).fetchone()
        if row:
            raise OperationError(
                f"{self.table.schema}.{name} exists but is not a partition of {self.table.display}",
                hint="a detached partition? rename or drop it, or re-attach it",
            )

    def ensure_month(self, month: date) -> None:
        table, result = self.table, self.result
        name = partition_name(table.name, month)
        lo, hi = midnight(month), midnight(add_months(month, 1))
        with self.conn.transaction():
            self.begin()
            if not self.dry_run:
                self.lock_table()
            children = list_children(self.conn, table)
            exact = [c for c in children if not c.is_default and c.lower == lo and c.upper == hi]
            if exact:
                result.in_place.append(exact[0].name)
                return
            overlapping = [c for c in children if c.covers_any_of(lo, hi)]
            if overlapping:
                others = ", ".join(c.name for c in overlapping)
                result.covered_elsewhere.append(f"{month:%Y-%m} by {others}")
                self.log.warning(
                    "month already covered by other partitions", month=f"{month:%Y-%m}", partitions=others
                )
                return
            self.refuse_name_clash(name)
            stmts = create_statements(table, month)
            default = next((c for c in children if c.is_default), None)
            self.execute(stmts["create"])
            if table.owner != self.current_user():
                self.execute(stmts["owner"])
            moved = 0
            if default is not None:
                moved = move_from_default(
                    self.conn, table, default, month, self.execute, self.dry_run, self.batch_pages
                )
            self.execute(stmts["check"])
            self.execute(stmts["attach"])
            self.execute(stmts["drop_check"])
        result.created.append(name)
        if moved:
            result.moved_rows[name] = moved
        if not self.dry_run:
            self.log.info("partition created", partition=name, moved_rows=moved)

    def census(self, next_month: date) -> tuple[int, int]:
        """(partitions whose lower bound is on or after `next_month`, rows in the DEFAULT partition)."""
        start = midnight(next_month)
        with self.conn.transaction():
            self.begin()
            children = list_children(self.conn, self.table)
            future = sum(1 for c in children if c.lower is not None and c.lower >= start)
            default = next((c for c in children if c.is_default), None)
            if default is None:
                return future, 0
            stmt = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(default.schema, default.name))
            row = self.conn.execute(stmt).fetchone()
        return future, int(row[0]) if row else 0

    def current_user(self) -> str:
        row = self.conn.execute("SELECT current_user").fetchone()
        return str(row[0]) if row else ""

    def apply_retention(self, cutoff: date, drop: bool) -> None:
        table = self.table
        limit = midnight(cutoff)
        with self.conn.transaction():
            self.begin()
            old = [
                c
                for c in list_children(self.conn, table)
                if not c.is_default and c.upper is not None and c.upper <= limit
            ]
        for child in old:
            ident = sql.Identifier(child.schema, child.name)
            stmt = (
                sql.SQL("DROP TABLE {}").format(ident)
                if drop
                else sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(table.ident, ident)
            )
            if self.dry_run:
                self.execute(stmt)
            else:
                with self.conn.transaction():
                    self.begin()
                    self.lock_table()
                    if child.oid not in {c.oid for c in list_children(self.conn, table)}:
                        continue
                    self.execute(stmt)
                self.log.info("partition dropped" if drop else "partition detached", partition=child.name)
            (self.result.dropped if drop else self.result.detached).append(child.name)
