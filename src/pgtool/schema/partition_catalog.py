"""The catalogue side of `pgtool partitions`: months, the partitioned table and its children, and the
DDL for one month's partition (see `pgtool.schema.partitions` for how they are used).

Month boundaries are UTC midnights: bounds are literals with an explicit `+00` offset, and the callers'
transactions run with `SET LOCAL TimeZone = 'UTC'` so bounds read back from the catalogue are UTC too.
Every query runs in a transaction whose search_path is pinned to '' (pgtool.pg.conn).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import psycopg
from psycopg import sql

from pgtool.errors import OperationError, UsageError

SUPPORTED_KEY_TYPES = {
    "timestamp with time zone": "timestamptz",
    "timestamp without time zone": "timestamp",
    "date": "date",
}
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


def midnight(day: date) -> datetime:
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
def check_name(table: PartitionedTable, month: date) -> str:
    return f"{partition_name(table.name, month)}_bound"


def create_statements(table: PartitionedTable, month: date) -> dict[str, sql.Composed]:
    """The DDL that creates one month's partition the low-lock way (move statement separate)."""
    name = partition_name(table.name, month)
    child = table.child_ident(name)
    lo, hi = table.bound(month), table.bound(add_months(month, 1))
    key = sql.Identifier(table.key)
    check = sql.Identifier(check_name(table, month))
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
