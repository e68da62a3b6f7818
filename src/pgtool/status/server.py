"""Checks that read the server itself: version and uptime, archiver, replication, long transactions.

Every query here works for a role with `pg_monitor`; without it some facts are hidden (PostgreSQL shows
other sessions' details and the archive status directory only to pg_monitor or superusers) and the
section says so instead of failing. The connection is in autocommit, so one refused query does not
abort the others.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgtool.status.durations import format_bytes, format_duration
from pgtool.status.model import Section, Thresholds

SERVER_SQL = """
SELECT current_setting('server_version') AS version,
       current_setting('server_version_num')::int AS version_num,
       pg_postmaster_start_time() AS started_at,
       extract(epoch FROM now() - pg_postmaster_start_time())::float8 AS uptime_s,
       pg_is_in_recovery() AS in_recovery,
       current_setting('max_connections')::int AS max_connections,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int AS connections,
       current_database() AS database,
       current_user AS role
"""

SETTINGS_SQL = """
SELECT name, setting FROM pg_settings
WHERE name IN ('archive_mode', 'archive_command', 'archive_library', 'wal_segment_size', 'track_io_timing')
"""

ARCHIVER_SQL = """
SELECT archived_count, last_archived_wal, last_archived_time, failed_count, last_failed_wal,
       last_failed_time, stats_reset,
       extract(epoch FROM now() - last_archived_time)::float8 AS last_archived_age_s,
       extract(epoch FROM now() - last_failed_time)::float8 AS last_failed_age_s
FROM pg_stat_archiver
"""

# Segments PostgreSQL finished writing but the archiver has not shipped yet (pg_monitor or superuser).
ARCHIVE_BACKLOG_SQL = """
SELECT count(*)::int AS waiting,
       extract(epoch FROM now() - min(modification))::float8 AS oldest_age_s
FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'
"""

CURRENT_WAL_SQL = "SELECT pg_walfile_name(pg_current_wal_lsn()) AS current_wal"

REPLICAS_SQL = """
SELECT application_name, client_addr::text AS client_addr, state, sync_state,
       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS lag_bytes,
       extract(epoch FROM replay_lag)::float8 AS lag_s
FROM pg_stat_replication
ORDER BY application_name, client_addr
"""

SLOTS_SQL = """
SELECT slot_name, slot_type, active,
       pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint AS retained_bytes,
       wal_status
FROM pg_replication_slots
ORDER BY slot_name
"""

STANDBY_SQL = """
SELECT pg_last_wal_receive_lsn()::text AS receive_lsn,
       pg_last_wal_replay_lsn()::text AS replay_lsn,
       extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 AS replay_age_s,
       (SELECT status FROM pg_stat_wal_receiver) AS receiver_status
"""

LONG_XACTS_SQL = """
SELECT pid, usename AS "user", datname AS database, state,
       extract(epoch FROM now() - xact_start)::float8 AS age_s,
       wait_event_type,
       left(regexp_replace(coalesce(query, ''), '\\s+', ' ', 'g'), 100) AS query
FROM pg_stat_activity
WHERE xact_start IS NOT NULL
  AND pid <> pg_backend_pid()
  AND backend_type = 'client backend'
  AND now() - xact_start > make_interval(secs => %s)
ORDER BY xact_start
"""

PREPARED_XACTS_SQL = """
SELECT gid, owner, database, extract(epoch FROM now() - prepared)::float8 AS age_s
FROM pg_prepared_xacts
WHERE now() - prepared > make_interval(secs => %s)
ORDER BY prepared
"""


def _rows(conn: psycopg.Connection[Any], sql: str, params: Any = None) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql, params)
        return list(cur.fetchall())


def _try_rows(
    conn: psycopg.Connection[Any], sql: str, params: Any = None
) -> tuple[list[dict[str, Any]] | None, str]:
    """Rows, or (None, reason) when the role may not run the query."""
    try:
        return _rows(conn, sql, params), ""
    except (psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedFunction) as exc:
        return None, str(exc).splitlines()[0]


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def read_server(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Facts every other check needs: version, recovery state, settings (hidden ones are None)."""
    info = _rows(conn, SERVER_SQL)[0]
    settings = {r["name"]: r["setting"] for r in _rows(conn, SETTINGS_SQL)}
    info["settings"] = settings
    return info


def server_section(info: dict[str, Any], thresholds: Thresholds) -> Section:
    section = Section("server", "Server")
    role = "standby (in recovery)" if info["in_recovery"] else "primary"
    used = info["connections"] / info["max_connections"] if info["max_connections"] else 0.0
    section.lines.append(
        f"PostgreSQL {info['version']}, {role}, up {format_duration(info['uptime_s'])} "
        f"(since {info['started_at']:%Y-%m-%d %H:%M %Z}), "
        f"{info['connections']}/{info['max_connections']} connections"
    )
    section.data.update(
        version=info["version"],
        version_num=info["version_num"],
        in_recovery=info["in_recovery"],
        started_at=_iso(info["started_at"]),
        uptime_seconds=round(info["uptime_s"], 1),
        connections=info["connections"],
        max_connections=info["max_connections"],
    )
    if used >= thresholds.max_connections_used:
        section.problem(
            f"{info['connections']} of {info['max_connections']} connections in use ({used:.0%})",
            "find idle sessions in pg_stat_activity, route clients through PgBouncer, "
            "or raise max_connections",
        )
    return section


def archiver_section(conn: psycopg.Connection[Any], info: dict[str, Any], thresholds: Thresholds) -> Section:
    section = Section("archiver", "Archiver")
    mode = info["settings"].get("archive_mode")
    section.data["archive_mode"] = mode
    if info["in_recovery"] and mode != "always":
        section.lines.append("standby: WAL is archived by the primary (archive_mode is not 'always')")
        return section.skip("standby")
    if mode == "off":
        section.lines.append("archive_mode = off: WAL is not archived")
        section.problem(
            "WAL archiving is off: no point-in-time recovery is possible",
            "set archive_mode = on and archive_command = 'pgtool archive-wal ...', then restart PostgreSQL",
        )
        return section
    settings = info["settings"]
    if (
        "archive_command" in settings
        and not settings["archive_command"]
        and not settings.get("archive_library")
    ):
        # Visible to superusers and pg_read_all_settings only; when seen empty, nothing is archived at all.
        section.problem(
            "archive_mode is on but archive_command is empty: WAL piles up in pg_wal, nothing is archived",
            "set archive_command = 'pgtool archive-wal ...' and reload PostgreSQL",
        )
    row = _rows(conn, ARCHIVER_SQL)[0]
    backlog, denied = _try_rows(conn, ARCHIVE_BACKLOG_SQL)
    current = _rows(conn, CURRENT_WAL_SQL)[0]["current_wal"] if not info["in_recovery"] else None
    section.data.update(
        archived_count=row["archived_count"],
        last_archived_wal=row["last_archived_wal"],
        last_archived_time=_iso(row["last_archived_time"]),
        last_archived_age_seconds=row["last_archived_age_s"],
        failed_count=row["failed_count"],
        last_failed_wal=row["last_failed_wal"],
        last_failed_time=_iso(row["last_failed_time"]),
        stats_reset=_iso(row["stats_reset"]),
        current_wal=current,
        waiting_segments=backlog[0]["waiting"] if backlog else None,
        oldest_waiting_age_seconds=backlog[0]["oldest_age_s"] if backlog else None,
        waiting_segments_hidden=denied or None,
    )
    if row["last_archived_wal"]:
        section.lines.append(
            f"last archived {row['last_archived_wal']} {format_duration(row['last_archived_age_s'])} ago "
            f"({row['archived_count']} since stats reset); current WAL {current or '-'}"
        )
    else:
        section.lines.append(f"nothing archived since stats reset; current WAL {current or '-'}")
    if row["failed_count"]:
        section.lines.append(
            f"{row['failed_count']} failures, last {row['last_failed_wal']} "
            f"{format_duration(row['last_failed_age_s'])} ago"
        )
    else:
        section.lines.append("0 failures")
    if backlog:
        waiting = backlog[0]["waiting"]
        oldest = backlog[0]["oldest_age_s"]
        section.lines.append(
            f"{waiting} segments waiting to be archived"
            + (f", oldest for {format_duration(oldest)}" if waiting else "")
        )
    else:
        section.lines.append(f"archive backlog not visible ({denied}; grant pg_monitor to see it)")

    failing = row["failed_count"] and (
        row["last_archived_time"] is None
        or (row["last_failed_time"] is not None and row["last_failed_time"] > row["last_archived_time"])
    )
    if failing:
        section.problem(
            f"archive_command is failing: {row['failed_count']} failures, last for "
            f"{row['last_failed_wal']} {format_duration(row['last_failed_age_s'])} ago, "
            "no success since",
            "read the archive_command error in the PostgreSQL log and fix it; pg_wal grows until it succeeds",
        )
    elif backlog and backlog[0]["waiting"] and (backlog[0]["oldest_age_s"] or 0) > thresholds.max_archive_lag:
        section.problem(
            f"{backlog[0]['waiting']} WAL segments waiting to be archived, oldest for "
            f"{format_duration(backlog[0]['oldest_age_s'])}",
            "archiving is falling behind: check the archive target's speed and space and the PostgreSQL log",
        )
    return section


def replication_section(
    conn: psycopg.Connection[Any], info: dict[str, Any], thresholds: Thresholds
) -> Section:
    section = Section("replication", "Replication")
    if info["in_recovery"]:
        row = _rows(conn, STANDBY_SQL)[0]
        section.data.update(role="standby", **row)
        status = row["receiver_status"] or "not streaming"
        section.lines.append(
            f"standby: WAL receiver {status}, received {row['receive_lsn'] or '-'}, "
            f"replayed {row['replay_lsn'] or '-'}, last replayed commit "
            f"{format_duration(row['replay_age_s'])} ago"
        )
        if row["receiver_status"] != "streaming":
            section.problem(
                "this standby is not streaming from a primary",
                "check primary_conninfo and the replication role, and the PostgreSQL log on both servers",
            )
        return section
    replicas = _rows(conn, REPLICAS_SQL)
    slots, _denied = _try_rows(conn, SLOTS_SQL)
    section.data.update(role="primary", replicas=replicas, slots=slots or [])
    if not replicas:
        section.lines.append("no replicas connected")
    for r in replicas:
        lag_s = r["lag_s"] or 0.0
        lag_b = r["lag_bytes"] or 0
        section.lines.append(
            f"{r['application_name'] or '?'} {r['client_addr'] or 'local'}: {r['state']} {r['sync_state']}, "
            f"lag {format_bytes(lag_b)} / {format_duration(lag_s)}"
        )
        name = r["application_name"] or r["client_addr"] or "replica"
        if r["state"] is None:  # PostgreSQL hides the details from roles without pg_monitor
            section.lines[-1] = "a replica is connected; details hidden (grant pg_monitor to see them)"
            continue
        if r["state"] != "streaming":
            section.problem(
                f"replica {name} is {r['state']}, not streaming",
                "wait for it to catch up, or check its log if it stays there",
            )
        elif lag_s > thresholds.max_replication_lag or lag_b > thresholds.max_replication_lag_bytes:
            section.problem(
                f"replica {name} lags {format_bytes(lag_b)} / {format_duration(lag_s)}",
                "check the replica's I/O and network, and long queries on it holding replay back",
            )
    for s in slots or []:
        if s["active"]:
            continue
        section.lines.append(
            f"slot {s['slot_name']} ({s['slot_type']}): inactive, retains {format_bytes(s['retained_bytes'])}"
        )
        if s["wal_status"] == "lost":
            section.problem(
                f"replication slot {s['slot_name']} has lost WAL its consumer needs",
                f"rebuild the consumer, then SELECT pg_drop_replication_slot('{s['slot_name']}')",
            )
        elif s["retained_bytes"]:
            section.problem(
                f"replication slot {s['slot_name']} is inactive and retains "
                f"{format_bytes(s['retained_bytes'])} of WAL",
                f"reconnect its consumer, or SELECT pg_drop_replication_slot('{s['slot_name']}') "
                "before pg_wal fills the disk",
            )
    return section


def transactions_section(conn: psycopg.Connection[Any], thresholds: Thresholds) -> Section:
    section = Section("transactions", "Transactions")
    limit = thresholds.max_xact_age
    long_xacts = _rows(conn, LONG_XACTS_SQL, (limit,))
    prepared = _rows(conn, PREPARED_XACTS_SQL, (limit,))
    section.data.update(threshold_seconds=limit, long_running=long_xacts, prepared=prepared)
    if not long_xacts and not prepared:
        section.lines.append(f"none open longer than {format_duration(limit)}")
    for x in long_xacts:
        section.lines.append(
            f"pid {x['pid']} {x['user']}@{x['database']} {x['state']} for {format_duration(x['age_s'])}: "
            f"{x['query']}"
        )
        section.problem(
            f"transaction of pid {x['pid']} ({x['user']}@{x['database']}, {x['state']}) "
            f"open for {format_duration(x['age_s'])}",
            "it holds back vacuum and may hold locks: ask its owner, or "
            f"SELECT pg_terminate_backend({x['pid']})",
        )
    for p in prepared:
        section.lines.append(f"prepared transaction {p['gid']!r} for {format_duration(p['age_s'])}")
        section.problem(
            f"prepared transaction {p['gid']!r} in {p['database']} open for {format_duration(p['age_s'])}",
            f"COMMIT PREPARED or ROLLBACK PREPARED '{p['gid']}' once its coordinator's decision is known",
        )
    return section
