"""Recoverability on one screen: the RPO now, the verified recovery point, and a predicted RTO for now.

- RPO now: WAL not yet archived is lost with the server (`rpo`: now - when the newest archived
  segment was archived, the backlog not archived and the archiver's failures).
- Verified recovery point: the commit time of the last transaction the newest base drill
  (`pgtool verify --base`) actually replayed, read from the Pushgateway like the other verify results
  (`pgtool_verified_recovery_point_timestamp_seconds`, job `pgtool-verify-base`).
- Predicted RTO for now = measured restore time + (server's current LSN - newest base backup's start
  LSN) / measured replay rate. Restore time and replay rate come from the last base drill
  (`pgtool_restore_duration_seconds`, `pgtool_replay_bytes_per_second`); the newest backup from
  `--base-dir`, because a recovery now starts from it and replays everything since its start.
  status pushes nothing: the drill's own `pgtool_predicted_rto_seconds` is its measured RTO.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pgtool.status.durations import format_bytes, format_duration
from pgtool.status.model import Section, Thresholds

if TYPE_CHECKING:
    import psycopg

BASE_JOB = "pgtool-verify-base"
RECOVERY_POINT = "pgtool_verified_recovery_point_timestamp_seconds"
RESTORE = "pgtool_restore_duration_seconds"
RATE = "pgtool_replay_bytes_per_second"
DRILL_RTO = "pgtool_predicted_rto_seconds"
GAUGES = (RECOVERY_POINT, RESTORE, RATE, DRILL_RTO)
FORMULA = "predicted RTO = restore time + (current LSN - newest base backup's start LSN) / replay rate"

# Where the server is writing (primary) or has replayed to (standby): the end of the WAL a recovery needs.
CURRENT_LSN_SQL = (
    "SELECT (CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn() "
    "ELSE pg_catalog.pg_current_wal_lsn() END)::text"
)


def read_current_lsn(conn: psycopg.Connection[Any]) -> int | None:
    from pgtool.wal.names import parse_lsn

    row = conn.execute(CURRENT_LSN_SQL).fetchone()
    return parse_lsn(str(row[0])) if row is not None and row[0] is not None else None


def newest_backup_start(base_dir: Path | None) -> tuple[str, int] | None:
    """(id, start LSN) of the newest complete base backup in `base_dir`, or None."""
    if base_dir is None:
        return None
    from pgtool.physical.base_catalog import list_base_backups
    from pgtool.wal.names import parse_lsn

    try:
        backups = list_base_backups(Path(base_dir))
    except OSError:
        return None  # the base backups section reports it
    if not backups:
        return None
    return backups[-1].id, parse_lsn(backups[-1].start_lsn)


def predicted_rto(restore_seconds: float, wal_bytes: int, bytes_per_second: float) -> float:
    """restore + wal_bytes / rate (the formula stated in the output)."""
    return restore_seconds + wal_bytes / bytes_per_second


def recoverability_section(
    drill: dict[str, Any] | None,
    rpo: dict[str, Any],
    current_lsn: int | None,
    newest: tuple[str, int] | None,
    *,
    pushgateway: str | None,
    thresholds: Thresholds,
    now: float | None = None,
) -> Section:
    """drill: the pgtool-verify-base gauges read from the Pushgateway (None: none there).
    rpo: `rpo.measure_rpo`'s facts (the RPO is a problem above --max-rpo)."""
    from pgtool.status.rpo import rpo_lines
    from pgtool.wal.names import format_lsn

    section = Section("recoverability", "Recoverability")
    now = time.time() if now is None else now
    rpo_lines(section, rpo, thresholds)
    if not pushgateway:
        section.lines.append("verified recovery point and RTO: pass --pushgateway where verify --base pushes")
        return section.skip("pass --pushgateway to read the last base drill's measurements")
    drill = drill or {}
    point = drill.get(RECOVERY_POINT)
    if point:
        when = datetime.fromtimestamp(point, UTC).isoformat()
        section.lines.append(f"verified recovery point: {when} ({format_duration(now - point)} old)")
        section.data["verified_recovery_point"] = when
        section.data["verified_recovery_point_age_seconds"] = round(now - point, 1)
    else:
        section.lines.append(f"verified recovery point: none in the Pushgateway (job {BASE_JOB})")
        section.data["verified_recovery_point"] = None
    restore, rate = drill.get(RESTORE), drill.get(RATE)
    section.data["restore_seconds"] = restore
    section.data["replay_bytes_per_second"] = rate
    section.data["formula"] = FORMULA
    if restore is None or not rate:
        section.lines.append(
            "predicted RTO: no measured restore time and replay rate (run pgtool verify --base)"
        )
        section.data["predicted_rto_seconds"] = None
        return section
    if newest is None or current_lsn is None:
        section.lines.append(
            "predicted RTO: needs --base-dir with a base backup and the server's current LSN"
        )
        section.data["predicted_rto_seconds"] = None
        return section
    backup_id, start = newest
    wal = max(0, current_lsn - start)
    rto = predicted_rto(restore, wal, rate)
    section.data.update(
        predicted_rto_seconds=round(rto, 1),
        wal_since_backup_bytes=wal,
        backup=backup_id,
        backup_start_lsn=format_lsn(start),
        current_lsn=format_lsn(current_lsn),
    )
    section.lines.append(
        f"predicted RTO now: {format_duration(rto)} = restore {restore:.1f}s + {format_bytes(wal)} of WAL "
        f"since {backup_id} ({format_lsn(start)}..{format_lsn(current_lsn)}) / {format_bytes(rate)}/s"
    )
    section.lines.append(FORMULA + " (both measured by the last verify --base)")
    return section
