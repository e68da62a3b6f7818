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
    showtext: bool = True,
) -> sql.Composed:
    """The snapshot query: one row per statement, sorted by `order` (see ORDERS), `limit` rows,
    of every database or only of `database`; the view is read from `schema` (the extension's).

    showtext=False reads `pg_stat_statements(false)`: no query text (NULL), for when some text cannot
    be converted to this database's encoding. top's own statement is then told apart by its query id
    (the one pg_stat_activity shows for this backend), since the marker lives in the text.
    """
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
       {cols["io"]} AS io_ms, {"s.query" if showtext else "NULL::text AS query"}
FROM {{source}} s
LEFT JOIN pg_catalog.pg_database d ON d.oid = s.dbid
LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.userid
WHERE {{not_own}}{{only_db}}
ORDER BY {sort}, s.queryid
LIMIT {{limit}}"""
    only_db = sql.SQL(" AND d.datname = {}").format(sql.Literal(database)) if database else sql.SQL("")
    view = sql.Identifier(schema, "pg_stat_statements")
    if showtext:
        source: sql.Composable = view
        not_own: sql.Composable = sql.SQL("s.query NOT LIKE {}").format(sql.Literal(MARKER + "%"))
    else:
        source = sql.SQL("{}(false)").format(view)
        not_own = sql.SQL(
            "s.queryid IS DISTINCT FROM (SELECT a.query_id FROM pg_catalog.pg_stat_activity a "
            "WHERE a.pid = pg_catalog.pg_backend_pid())"
        )
    return sql.SQL(text).format(
        source=source,
        not_own=not_own,
        only_db=only_db,
        limit=sql.Literal(int(limit)),
    )
