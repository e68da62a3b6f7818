"""pg_stat_statements SQL per server version and sort order.

Column names changed twice: PostgreSQL 13 split `total_time`/`mean_time` into plan and execution times
(`total_exec_time`, `mean_exec_time`), and 17 renamed `blk_read_time`/`blk_write_time` to
`shared_blk_read_time`/`shared_blk_write_time` (adding local_ and temp_ ones).
"""

from __future__ import annotations

from psycopg import sql

ORDERS = ("mean", "total", "io", "calls")
# Marks pgtool top's own statement so it never shows up in its own list.
MARKER = "/* pgtool top */"


def time_columns(server_version_num: int) -> dict[str, str]:
    """The expressions for total/mean execution time and I/O time on this server version."""
    if server_version_num >= 130000:
        total, mean = "s.total_exec_time", "s.mean_exec_time"
    else:
        total, mean = "s.total_time", "s.mean_time"
    if server_version_num >= 170000:
        io = "s.shared_blk_read_time + s.shared_blk_write_time"
    else:
        io = "s.blk_read_time + s.blk_write_time"
    return {"total": total, "mean": mean, "io": io}


def statements_query(
    server_version_num: int,
    order: str,
    limit: int,
    database: str | None = None,
    *,
    schema: str = "public",
) -> sql.Composed:
    """The snapshot query: one row per statement, sorted by `order` (see ORDERS), `limit` rows,
    of every database or only of `database`; the view is read from `schema` (the extension's)."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}")
    cols = time_columns(server_version_num)
    sort = {
        "mean": "mean_ms DESC",
        "total": "total_ms DESC",
        "io": "io_ms DESC, s.shared_blks_read + s.shared_blks_written DESC",
        "calls": "s.calls DESC",
    }[order]
    text = f"""{MARKER}
SELECT s.queryid, d.datname AS database, r.rolname AS "user", s.calls,
       {cols["total"]} AS total_ms, {cols["mean"]} AS mean_ms, s.rows,
       s.shared_blks_hit, s.shared_blks_read, s.shared_blks_written,
       {cols["io"]} AS io_ms, s.query
FROM {{view}} s
LEFT JOIN pg_catalog.pg_database d ON d.oid = s.dbid
LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.userid
WHERE s.query NOT LIKE {{marker}}{{only_db}}
ORDER BY {sort}, s.queryid
LIMIT {{limit}}"""
    only_db = sql.SQL(" AND d.datname = {}").format(sql.Literal(database)) if database else sql.SQL("")
    return sql.SQL(text).format(
        view=sql.Identifier(schema, "pg_stat_statements"),
        marker=sql.Literal(MARKER + "%"),
        only_db=only_db,
        limit=sql.Literal(int(limit)),
    )
