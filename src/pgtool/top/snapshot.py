"""One snapshot of pg_stat_statements, with a clear error when the extension is not usable."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgtool.errors import OperationError
from pgtool.obs.logging import get_logger
from pgtool.top.queries import statements_query

CREATE_HINT = "CREATE EXTENSION pg_stat_statements; in this database (or run pgtool bootstrap-extensions)"
PRELOAD_HINT = (
    "set shared_preload_libraries = 'pg_stat_statements' in postgresql.conf and restart PostgreSQL, "
    "then CREATE EXTENSION pg_stat_statements"
)
# Shown instead of the text when pg_stat_statements cannot convert some database's query text (say,
# 8-bit bytes from a SQL_ASCII database) into this database's encoding: the server then fails the whole
# read, so the statistics are read without any text.
NO_TEXT = "(query text not shown: pg_stat_statements holds text this database's encoding cannot carry)"


@dataclass
class Statement:
    queryid: int | None
    database: str | None
    user: str | None
    calls: int
    total_ms: float
    mean_ms: float
    rows: int
    shared_blks_hit: int
    shared_blks_read: int
    shared_blks_written: int
    io_ms: float
    query: str

    @property
    def hit_ratio(self) -> float | None:
        touched = self.shared_blks_hit + self.shared_blks_read
        return self.shared_blks_hit / touched if touched else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "queryid": self.queryid,
            "database": self.database,
            "user": self.user,
            "calls": self.calls,
            "total_ms": round(self.total_ms, 3),
            "mean_ms": round(self.mean_ms, 3),
            "rows": self.rows,
            "shared_blks_hit": self.shared_blks_hit,
            "shared_blks_read": self.shared_blks_read,
            "shared_blks_written": self.shared_blks_written,
            "hit_ratio": None if self.hit_ratio is None else round(self.hit_ratio, 4),
            "io_ms": round(self.io_ms, 3),
            "query": " ".join(self.query.split()),
        }


@dataclass
class Snapshot:
    taken_at: float
    server_version: str
    server_version_num: int
    order: str
    track_io_timing: bool
    statements: list[Statement] = field(default_factory=list)


def check_extension(conn: psycopg.Connection[Any]) -> str:
    """The schema pg_stat_statements is installed in; OperationError saying what to run when it is
    missing in this database.

    The view is then read by its qualified name: the session's search_path is pinned to ''
    (pgtool.pg.conn), so an unqualified name would not find it, and the database owner cannot put a
    look-alike in front of it.
    """
    row = conn.execute(
        "SELECT n.nspname FROM pg_catalog.pg_extension e "
        "JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'pg_stat_statements'"
    ).fetchone()
    if row is None:
        db = conn.info.dbname
        raise OperationError(f"pg_stat_statements is not installed in database {db}", hint=CREATE_HINT)
    return str(row[0])


def take_snapshot(
    conn: psycopg.Connection[Any], order: str, limit: int, database: str | None = None
) -> Snapshot:
    """The top `limit` statements by `order`. OperationError with the fix when the extension is unusable."""
    schema = check_extension(conn)
    version_num = conn.info.server_version
    query = statements_query(version_num, order, limit, database, schema=schema)
    try:
        with conn.cursor(row_factory=dict_row) as cur:
            try:
                cur.execute(query)
            except (psycopg.errors.CharacterNotInRepertoire, psycopg.errors.UntranslatableCharacter) as exc:
                get_logger().warning(
                    "query texts not shown", reason=str(exc).splitlines()[0], database=conn.info.dbname
                )
                cur.execute(
                    statements_query(version_num, order, limit, database, schema=schema, showtext=False)
                )
            rows = cur.fetchall()
            cur.execute(
                "SELECT pg_catalog.current_setting('server_version') AS v, "
                "pg_catalog.current_setting('track_io_timing') AS io"
            )
            meta = cur.fetchone() or {}
    except psycopg.errors.ObjectNotInPrerequisiteState:
        raise OperationError("pg_stat_statements is installed but not preloaded", hint=PRELOAD_HINT) from None
    except psycopg.errors.InsufficientPrivilege as exc:
        raise OperationError(
            f"cannot read pg_stat_statements: {str(exc).splitlines()[0]}",
            hint="connect as a role with pg_read_all_stats (e.g. grafana_reader)",
        ) from None
    statements = [
        Statement(
            queryid=r["queryid"],
            database=r["database"],
            user=r["user"],
            calls=int(r["calls"]),
            total_ms=float(r["total_ms"] or 0),
            mean_ms=float(r["mean_ms"] or 0),
            rows=int(r["rows"] or 0),
            shared_blks_hit=int(r["shared_blks_hit"] or 0),
            shared_blks_read=int(r["shared_blks_read"] or 0),
            shared_blks_written=int(r["shared_blks_written"] or 0),
            io_ms=float(r["io_ms"] or 0),
            query=NO_TEXT if r["query"] is None else r["query"],
        )
        for r in rows
    ]
    return Snapshot(
        taken_at=time.time(),
        server_version=str(meta.get("v", "")),
        server_version_num=version_num,
        order=order,
        track_io_timing=meta.get("io") == "on",
        statements=statements,
    )
