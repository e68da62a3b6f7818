"""PgBouncer's pools, from its admin console (`SHOW POOLS` on the virtual `pgbouncer` database).

The admin console speaks only the simple query protocol and has no transactions: the connection is in
autocommit and never prepares (psycopg sends parameterless queries with the simple protocol). It runs no
SQL either, so there is no search_path to pin (pin="off"; set_config would be refused).
"""

from __future__ import annotations

from typing import Any

from pgtool.status.model import Section, Thresholds

POOL_FIELDS = (
    "database",
    "user",
    "cl_active",
    "cl_waiting",
    "sv_active",
    "sv_idle",
    "sv_used",
    "maxwait",
    "pool_mode",
)


def read_pools(pooler_dsn: str) -> list[dict[str, Any]]:
    """Rows of SHOW POOLS (ConnectError when PgBouncer cannot be reached)."""
    from pgtool.pg.conn import connect

    with connect(pooler_dsn, dbname="pgbouncer", autocommit=True, prepare_threshold=None, pin="off") as conn:
        cur = conn.execute("SHOW POOLS")
        names = [d.name for d in cur.description or []]
        rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    for row in rows:
        # maxwait is whole seconds, maxwait_us the rest (PgBouncer 1.8+).
        row["maxwait_seconds"] = float(row.get("maxwait") or 0) + float(row.get("maxwait_us") or 0) / 1e6
    return rows


def pooler_section(pooler_dsn: str | None, thresholds: Thresholds) -> Section:
    from pgtool.errors import ConnectError

    section = Section("pooler", "PgBouncer")
    if not pooler_dsn:
        section.lines.append("not checked (pass --pooler-dsn)")
        return section.skip("pass --pooler-dsn to read PgBouncer's pools")
    try:
        pools = read_pools(pooler_dsn)
    except ConnectError as exc:
        section.lines.append(exc.message)
        section.problem(
            exc.message, "check that PgBouncer runs and the role is in its admin_users or stats_users"
        )
        return section
    pools = [p for p in pools if p.get("database") != "pgbouncer"]
    section.data["pools"] = [{k: p.get(k) for k in (*POOL_FIELDS, "maxwait_seconds")} for p in pools]
    if not pools:
        section.lines.append("no pools yet (no client has connected)")
    for p in pools:
        section.lines.append(
            f"{p['database']}/{p['user']} ({p.get('pool_mode', '?')}): clients {p['cl_active']} active "
            f"{p['cl_waiting']} waiting, servers {p['sv_active']} active {p['sv_idle']} idle, "
            f"max wait {p['maxwait_seconds']:.1f}s"
        )
        if p["cl_waiting"] and p["maxwait_seconds"] >= thresholds.max_pool_wait:
            section.problem(
                f"{p['cl_waiting']} clients of pool {p['database']}/{p['user']} waiting up to "
                f"{p['maxwait_seconds']:.1f}s for a server connection",
                "look for long transactions holding server connections, or raise default_pool_size",
            )
    return section
