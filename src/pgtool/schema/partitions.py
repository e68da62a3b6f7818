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
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import psycopg
from psycopg import sql

from pgtool.errors import OperationError, UsageError
from pgtool.obs.logging import get_logger
from pgtool.pg.conn import pin_transaction
from pgtool.schema.locks import PARTITIONS_LOCK_CLASS, xact_lock

SUPPORTED_KEY_TYPES = {
    "timestamp with time zone": "timestamptz",
    "timestamp without time zone": "timestamp",
    "date": "date",
}
DEFAULT_LOCK_TIMEOUT = "10s"
MOVE_BATCH_PAGES = 1024  # 8 MB of heap per batch
# Bounds on the window, checked before connecting: absurd values must fail at once with one line, not
# with an OverflowError from date arithmetic, nor by creating thousands of partitions.
MAX_AHEAD = 120  # months: ten years of partitions ahead
MAX_RETENTION_MONTHS = 1200
MAX_MONTHS = 1200  # partitions one run may create (--since far in the past)
_RANGE_BOUND = re.compile(r"^FOR VALUES FROM \((?P<lo>.+)\) TO \((?P<hi>.+)\)$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


# -- months --------------------------------------------------------------------------------------
def parse_month(text: str) -> date:
    """'YYYY-MM' as the first day of that month; UsageError otherwise."""
    match = _MONTH.match(text.strip())
    if not match or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 1:
        raise UsageError(f"invalid month {text!r}", hint="use YYYY-MM, e.g. 2025-01")
    return date(int(match.group(1)), int(match.group(2)), 1)


def add_months(day: date, months: int) -> date:
    """The first day of the month `months` after (or before) `day`'s month."""
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def current_month(now: datetime | None = None) -> date:
    """The current month in UTC."""
    moment = now or datetime.now(UTC)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.date().replace(day=1)


def partition_name(table: str, month: date) -> str:
    return f"{table}_p{month:%Y_%m}"


# -- catalogue -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PartitionedTable:
    oid: int
    schema: str
    name: str
    owner: str
    key: str
    key_type: str  # timestamptz, timestamp or date
    columns: tuple[str, ...]  # insertable columns, in order

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def display(self) -> str:
        return f"{self.schema}.{self.name}"

    def child_ident(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.schema, name)

    def bound(self, day: date) -> sql.Literal:
        """The range bound literal for midnight UTC of `day`, in the key's type."""
        if self.key_type == "timestamptz":
            return sql.Literal(f"{day.isoformat()} 00:00:00+00")
        if self.key_type == "timestamp":
            return sql.Literal(f"{day.isoformat()} 00:00:00")
        return sql.Literal(day.isoformat())


@dataclass(frozen=True)
class Child:
    oid: int
    schema: str
    name: str
    is_default: bool
    lower: datetime | None  # None: MINVALUE (or DEFAULT)
    upper: datetime | None  # None: MAXVALUE (or DEFAULT)

    def covers_any_of(self, lo: datetime, hi: datetime) -> bool:
        if self.is_default:
            return False
        return (self.lower is None or self.lower < hi) and (self.upper is None or self.upper > lo)


def _parse_bound_value(text: str) -> datetime | None:
    text = text.strip()
    if text in ("MINVALUE", "MAXVALUE"):
        return None
    value = datetime.fromisoformat(text.strip("'"))
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)


def resolve_table(conn: psycopg.Connection[Any], table: str) -> PartitionedTable:
    """Look `SCHEMA.TABLE` up (a bare name means `public`); check it is range-partitioned on a time key."""
    schema, _, name = table.rpartition(".")
    schema = schema or "public"
    row = conn.execute(
        """
        SELECT c.oid, c.relkind, pg_get_userbyid(c.relowner), pt.partstrat, pt.partnatts,
               pt.partattrs[0], a.attname, format_type(a.atttypid, a.atttypmod)
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_partitioned_table pt ON pt.partrelid = c.oid
        LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = pt.partattrs[0]
        WHERE n.nspname = %s AND c.relname = %s
        """,
        (schema, name),
    ).fetchone()
    if row is None:
        raise UsageError(f"table {schema}.{name} does not exist", hint="pass --table SCHEMA.TABLE")
    oid, relkind, owner, strategy, natts, attnum, key, key_type = row
    if relkind != "p":
        raise UsageError(
            f"{schema}.{name} is not a partitioned table",
            hint="create it with PARTITION BY RANGE (<timestamp column>)",
        )
    if strategy != "r" or natts != 1 or attnum == 0:
        raise UsageError(f"{schema}.{name} is not range-partitioned on a single column")
    if key_type not in SUPPORTED_KEY_TYPES:
        raise UsageError(
            f"{schema}.{name} is partitioned on {key} of type {key_type}",
            hint="monthly partitions need a timestamptz, timestamp or date key",
        )
    if len(partition_name(name, date(2000, 1, 1))) > 63:
        raise UsageError(f"table name {name!r} is too long for partition names <table>_pYYYY_MM (63 bytes)")
    columns = tuple(
        r[0]
        for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped "
            "AND attgenerated = '' ORDER BY attnum",
            (oid,),
        )
    )
    return PartitionedTable(oid, schema, name, owner, key, SUPPORTED_KEY_TYPES[key_type], columns)


def list_children(conn: psycopg.Connection[Any], table: PartitionedTable) -> list[Child]:
    """The table's partitions with their ranges (read in a UTC session: callers SET LOCAL TimeZone)."""
    children = []
    for oid, schema, name, bound in conn.execute(
        """
        SELECT c.oid, n.nspname, c.relname, pg_get_expr(c.relpartbound, c.oid)
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE i.inhparent = %s
        ORDER BY c.relname
        """,
        (table.oid,),
    ):
        if bound == "DEFAULT":
            children.append(Child(oid, schema, name, True, None, None))
            continue
        match = _RANGE_BOUND.match(bound or "")
        if not match:
            raise OperationError(f"cannot read the range of partition {schema}.{name}: {bound}")
        lower = _parse_bound_value(match["lo"])
        upper = _parse_bound_value(match["hi"])
        children.append(Child(oid, schema, name, False, lower, upper))
    return children


# -- statements ----------------------------------------------------------------------------------
def _begin(conn: psycopg.Connection[Any], lock_timeout: str) -> None:
    """The first statements of every transaction: the connection is opened with pin="transaction"
    (partitions works through PgBouncer in transaction pooling mode), so search_path is pinned to ''
    here, for this transaction, before anything else runs (see pgtool.pg.conn)."""
    pin_transaction(conn)
    conn.execute("SET LOCAL TimeZone = 'UTC'")
    conn.execute("SELECT pg_catalog.set_config('lock_timeout', %s, true)", (lock_timeout,))


def _check_name(table: PartitionedTable, month: date) -> str:
    return f"{partition_name(table.name, month)}_bound"


def create_statements(table: PartitionedTable, month: date) -> dict[str, sql.Composed]:
    """The DDL that creates one month's partition the low-lock way (move statement separate)."""
    name = partition_name(table.name, month)
    child = table.child_ident(name)
    lo, hi = table.bound(month), table.bound(add_months(month, 1))
    key = sql.Identifier(table.key)
    check = sql.Identifier(_check_name(table, month))
    return {
        "create": sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL EXCLUDING IDENTITY)").format(
            child, table.ident
        ),
        "owner": sql.SQL("ALTER TABLE {} OWNER TO {}").format(child, sql.Identifier(table.owner)),
        "check": sql.SQL(
            "ALTER TABLE {} ADD CONSTRAINT {} CHECK ({} IS NOT NULL AND {} >= {} AND {} < {})"
        ).format(child, check, key, key, lo, key, hi),
        "attach": sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
            table.ident, child, lo, hi
        ),
        "drop_check": sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(child, check),
    }


def move_statement(
    table: PartitionedTable, default: Child, month: date, first_page: int, last_page: int
) -> sql.Composed:
    """Move the rows of `month` found in pages [first_page, last_page) of the DEFAULT partition."""
    name = partition_name(table.name, month)
    cols = sql.SQL(", ").join(map(sql.Identifier, table.columns))
    key = sql.Identifier(table.key)
    return sql.SQL(
        "WITH moved AS (DELETE FROM {src} WHERE ctid >= {p0}::tid AND ctid < {p1}::tid "
        "AND {key} >= {lo} AND {key} < {hi} RETURNING {cols}) "
        "INSERT INTO {dst} ({cols}) SELECT {cols} FROM moved"
    ).format(
        src=sql.Identifier(default.schema, default.name),
        p0=sql.Literal(f"({first_page},0)"),
        p1=sql.Literal(f"({last_page},0)"),
        key=key,
        lo=table.bound(month),
        hi=table.bound(add_months(month, 1)),
        cols=cols,
        dst=table.child_ident(name),
    )


# -- result --------------------------------------------------------------------------------------
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


# -- the job -------------------------------------------------------------------------------------
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
) -> PartitionsResult:
    """Make sure the monthly partitions of `table` exist (and apply retention). See the module docstring.

    conn: autocommit connection. table: 'schema.table'. since: first month wanted (first day of a month;
    default the current UTC month). now: the clock (tests). lock_timeout: per transaction, a PostgreSQL
    interval; a run that cannot get its locks in time fails (exit 1) rather than queueing writers behind it.
    Raises UsageError for a table or arguments that cannot work, OperationError when DDL fails (that
    partition's transaction rolled back; partitions created before it stay).
    """
    first, last, cutoff = plan_window(ahead=ahead, since=since, retention_months=retention_months, now=now)
    if not conn.autocommit:
        raise UsageError("maintain_partitions needs an autocommit connection (it commits per partition)")
    log = get_logger().bind(table=table)

    try:
        return _maintain(
            conn,
            table,
            first,
            last,
            cutoff,
            drop=drop,
            dry_run=dry_run,
            lock_timeout=lock_timeout,
            batch_pages=batch_pages,
            log=log,
        )
    except psycopg.errors.LockNotAvailable:
        raise OperationError(
            f"could not lock {table} (or one of its partitions) within lock_timeout {lock_timeout}",
            hint="a long transaction holds a conflicting lock; retry later or raise --lock-timeout",
        ) from None
    except psycopg.Error as exc:
        detail = " ".join(str(exc).split())
        raise OperationError(f"partition maintenance of {table} failed: {detail}") from None


def _maintain(
    conn: psycopg.Connection[Any],
    table: str,
    first: date,
    last: date,
    cutoff: date | None,
    *,
    drop: bool,
    dry_run: bool,
    lock_timeout: str,
    batch_pages: int,
    log: Any,
) -> PartitionsResult:
    with conn.transaction():
        _begin(conn, lock_timeout)
        target = resolve_table(conn, table)
        children = list_children(conn, target)
    result = PartitionsResult(table=target.display, dry_run=dry_run)
    execute: Callable[[sql.Composable], Any]
    if dry_run:

        def execute(stmt: sql.Composable) -> None:
            result.ddl.append(stmt.as_string(conn) + ";")
    else:

        def execute(stmt: sql.Composable) -> Any:
            result.ddl.append(stmt.as_string(conn) + ";")
            return conn.execute(stmt)

    _ensure_default(conn, target, children, result, execute, dry_run, lock_timeout, log)
    month = first
    while month <= last:
        _ensure_month(conn, target, month, result, execute, dry_run, lock_timeout, batch_pages, log)
        month = add_months(month, 1)
    if cutoff:
        _apply_retention(conn, target, cutoff, drop, result, execute, dry_run, lock_timeout, log)
    return result


def _ensure_default(
    conn: psycopg.Connection[Any],
    table: PartitionedTable,
    children: list[Child],
    result: PartitionsResult,
    execute: Callable[[sql.Composable], Any],
    dry_run: bool,
    lock_timeout: str,
    log: Any,
) -> None:
    if any(c.is_default for c in children):
        return
    name = f"{table.name}_default"
    stmt = sql.SQL("CREATE TABLE {} PARTITION OF {} DEFAULT").format(table.child_ident(name), table.ident)
    if dry_run:
        execute(stmt)
        result.default_created = name
        return
    with conn.transaction():
        _begin(conn, lock_timeout)
        xact_lock(conn, PARTITIONS_LOCK_CLASS, table.oid)
        if any(c.is_default for c in list_children(conn, table)):
            return
        _refuse_name_clash(conn, table, name)
        execute(stmt)
    result.default_created = name
    log.info("default partition created", partition=name)


def _refuse_name_clash(conn: psycopg.Connection[Any], table: PartitionedTable, name: str) -> None:
    row = conn.execute(
        "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s",
        (table.schema, name),
    ).fetchone()
    if row:
        raise OperationError(
            f"{table.schema}.{name} exists but is not a partition of {table.display}",
            hint="a detached partition? rename or drop it, or re-attach it",
        )


def _ensure_month(
    conn: psycopg.Connection[Any],
    table: PartitionedTable,
    month: date,
    result: PartitionsResult,
    execute: Callable[[sql.Composable], Any],
    dry_run: bool,
    lock_timeout: str,
    batch_pages: int,
    log: Any,
) -> None:
    name = partition_name(table.name, month)
    lo, hi = _midnight(month), _midnight(add_months(month, 1))
    with conn.transaction():
        _begin(conn, lock_timeout)
        if not dry_run:
            # Serialise with concurrent runs; everything below is re-read under the lock.
            xact_lock(conn, PARTITIONS_LOCK_CLASS, table.oid)
        children = list_children(conn, table)
        exact = [c for c in children if not c.is_default and c.lower == lo and c.upper == hi]
        if exact:
            result.in_place.append(exact[0].name)
            return
        overlapping = [c for c in children if c.covers_any_of(lo, hi)]
        if overlapping:
            others = ", ".join(c.name for c in overlapping)
            result.covered_elsewhere.append(f"{month:%Y-%m} by {others}")
            log.warning(
                "month already covered by other partitions", month=f"{month:%Y-%m}", partitions=others
            )
            return
        _refuse_name_clash(conn, table, name)
        stmts = create_statements(table, month)
        default = next((c for c in children if c.is_default), None)
        execute(stmts["create"])
        if table.owner != _current_user(conn):
            execute(stmts["owner"])
        moved = 0
        if default is not None:
            moved = _move_from_default(conn, table, default, month, execute, dry_run, batch_pages)
        execute(stmts["check"])
        execute(stmts["attach"])
        execute(stmts["drop_check"])
    result.created.append(name)
    if moved:
        result.moved_rows[name] = moved
    if not dry_run:
        log.info("partition created", partition=name, moved_rows=moved)


def _current_user(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SELECT current_user").fetchone()
    return str(row[0]) if row else ""


def _move_from_default(
    conn: psycopg.Connection[Any],
    table: PartitionedTable,
    default: Child,
    month: date,
    execute: Callable[[sql.Composable], Any],
    dry_run: bool,
    batch_pages: int,
) -> int:
    """Move `month`'s rows out of the DEFAULT partition; returns how many moved (dry run: would move)."""
    default_ident = sql.Identifier(default.schema, default.name)
    key = sql.Identifier(table.key)
    count_stmt = sql.SQL("SELECT count(*) FROM {} WHERE {} >= {} AND {} < {}").format(
        default_ident, key, table.bound(month), key, table.bound(add_months(month, 1))
    )
    if not dry_run:
        # Block writes into the DEFAULT partition until commit (reads go on): nothing for this month can
        # arrive there between the move and the ATTACH, which would otherwise fail its validation scan.
        execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(default_ident))
    row = conn.execute(count_stmt).fetchone()
    expected = int(row[0]) if row else 0
    if expected == 0:
        return 0
    replica = _move_guard(conn, table, default)
    pages_row = conn.execute(
        "SELECT pg_relation_size(%s) / current_setting('block_size')::int", (default.oid,)
    ).fetchone()
    pages = int(pages_row[0]) if pages_row else 0
    if dry_run:
        result_stmt = move_statement(table, default, month, 0, max(pages, 1))
        note = sql.SQL(
            "-- move {} rows out of the DEFAULT partition (write-locked), in batches of {} pages\n"
        )
        execute(note.format(sql.Literal(expected), sql.Literal(batch_pages)) + result_stmt)
        return expected
    moved = 0
    if replica:
        # The rows only change partition: foreign keys referencing the table must not see a DELETE
        # (ON DELETE CASCADE would delete the referencing rows: the new partition is not attached yet).
        conn.execute("SET LOCAL session_replication_role = replica")
    for first_page in range(0, pages + 1, batch_pages):
        cur = conn.execute(move_statement(table, default, month, first_page, first_page + batch_pages))
        moved += max(cur.rowcount, 0)
    if replica:
        conn.execute("SET LOCAL session_replication_role = origin")
    if moved != expected:
        # Cannot happen while we hold the lock; refuse to attach rather than guess.
        raise OperationError(f"moved {moved} rows from {default.name} but expected {expected}; rolled back")
    return moved


# Code the table's owner controls that moving rows would run with our privileges: triggers and rules on
# the parent or the DEFAULT partition, and functions or operators outside pg_catalog that its constraints,
# indexes or column defaults/generation expressions call (LIKE ... INCLUDING ALL copies them to the new
# partition, whose INSERT evaluates them).
_OWNER_CODE_SQL = """
WITH rels AS (SELECT pg_catalog.unnest(%(rels)s::pg_catalog.oid[]) AS oid),
user_code AS (
    SELECT 'pg_catalog.pg_proc'::pg_catalog.regclass AS classid, p.oid FROM pg_catalog.pg_proc p
    WHERE p.pronamespace <> 'pg_catalog'::pg_catalog.regnamespace
    UNION ALL
    SELECT 'pg_catalog.pg_operator'::pg_catalog.regclass, o.oid FROM pg_catalog.pg_operator o
    WHERE o.oprnamespace <> 'pg_catalog'::pg_catalog.regnamespace
),
expressions AS (
    SELECT 'pg_catalog.pg_constraint'::pg_catalog.regclass AS classid, c.oid
    FROM pg_catalog.pg_constraint c WHERE c.conrelid IN (SELECT oid FROM rels)
    UNION ALL
    SELECT 'pg_catalog.pg_class'::pg_catalog.regclass, i.indexrelid
    FROM pg_catalog.pg_index i WHERE i.indrelid IN (SELECT oid FROM rels)
    UNION ALL
    SELECT 'pg_catalog.pg_attrdef'::pg_catalog.regclass, a.oid
    FROM pg_catalog.pg_attrdef a WHERE a.adrelid IN (SELECT oid FROM rels)
)
SELECT 'trigger ' || t.tgname FROM pg_catalog.pg_trigger t
WHERE t.tgrelid IN (SELECT oid FROM rels) AND NOT t.tgisinternal AND t.tgenabled <> 'D'
UNION ALL
SELECT 'rule ' || r.rulename FROM pg_catalog.pg_rewrite r WHERE r.ev_class IN (SELECT oid FROM rels)
UNION ALL
SELECT 'function or operator ' || pg_catalog.pg_describe_object(d.refclassid, d.refobjid, 0)
FROM pg_catalog.pg_depend d
JOIN user_code u ON u.classid = d.refclassid AND u.oid = d.refobjid
JOIN expressions e ON e.classid = d.classid AND e.oid = d.objid
LIMIT 3
"""


_REFERENCING_FKS_SQL = """
SELECT c.conname || ' on ' || c.conrelid::pg_catalog.regclass::pg_catalog.text
FROM pg_catalog.pg_constraint c
WHERE c.contype = 'f' AND c.confrelid = ANY(%(rels)s::pg_catalog.oid[]) AND c.conparentid = 0
LIMIT 3
"""


def _is_superuser(conn: psycopg.Connection[Any], role: str | None = None) -> bool:
    if role is None:
        row = conn.execute(
            "SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER"
        ).fetchone()
    else:
        row = conn.execute(
            "SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = %s", (role,)
        ).fetchone()
    return bool(row and row[0])


def _move_guard(conn: psycopg.Connection[Any], table: PartitionedTable, default: Child) -> bool:
    """Check that the rows of the DEFAULT partition can move safely; True when the move must run with
    session_replication_role = replica (foreign keys reference the table, and we are a superuser).

    Moving is DELETE + INSERT. It runs the DEFAULT partition's triggers and the table's constraint, index
    and default expressions as the connected role: a superuser would run a non-superuser owner's functions
    with its privileges (SET ROLE would not contain them: a function can RESET ROLE), so that is refused.
    The DELETE would also fire the ON DELETE actions of foreign keys referencing the table, while the
    rows' new partition is not attached yet: CASCADE would delete the referencing rows. A superuser moves
    them in replica mode (referential triggers off, the rows are back before commit); anyone else is
    refused. OperationError says what to do.
    """
    superuser = _is_superuser(conn)
    rels = {"rels": [table.oid, default.oid]}
    if superuser and not _is_superuser(conn, table.owner):
        found = [r[0] for r in conn.execute(_OWNER_CODE_SQL, rels)]
        if found:
            raise OperationError(
                f"rows of {table.display} in its DEFAULT partition would move through code its owner "
                f"{table.owner} controls ({', '.join(found)}), run as a superuser",
                hint=f"run pgtool partitions as {table.owner} (the table's owner), or move the rows by hand",
            )
    fks = [r[0] for r in conn.execute(_REFERENCING_FKS_SQL, rels)]
    if fks and not superuser:
        raise OperationError(
            f"rows of {table.display} in its DEFAULT partition cannot move: foreign keys reference it "
            f"({', '.join(fks)}) and moving a row deletes it first",
            hint="run pgtool partitions as a superuser (it moves them with referential triggers off)",
        )
    return bool(fks)


def _apply_retention(
    conn: psycopg.Connection[Any],
    table: PartitionedTable,
    cutoff: date,
    drop: bool,
    result: PartitionsResult,
    execute: Callable[[sql.Composable], Any],
    dry_run: bool,
    lock_timeout: str,
    log: Any,
) -> None:
    limit = _midnight(cutoff)
    with conn.transaction():
        _begin(conn, lock_timeout)
        old = [
            c
            for c in list_children(conn, table)
            if not c.is_default and c.upper is not None and c.upper <= limit
        ]
    for child in old:
        ident = sql.Identifier(child.schema, child.name)
        stmt = (
            sql.SQL("DROP TABLE {}").format(ident)
            if drop
            else sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(table.ident, ident)
        )
        if dry_run:
            execute(stmt)
        else:
            with conn.transaction():
                _begin(conn, lock_timeout)
                xact_lock(conn, PARTITIONS_LOCK_CLASS, table.oid)
                if child.oid not in {c.oid for c in list_children(conn, table)}:
                    continue
                execute(stmt)
            log.info("partition dropped" if drop else "partition detached", partition=child.name)
        (result.dropped if drop else result.detached).append(child.name)
