"""RPO as one number: how much WAL, and how much time, a loss of the server right now would cost.

RPO = now - when the newest archived segment was archived. Which time that is, is stated in the
output (`rpo_source`):
- `--repo`: the object's last-modified time in the store (when archive-wal stored it);
- `--archive-dir`: the segment file's modification time;
- neither: `pg_stat_archiver.last_archived_time` (when the server's archiver finished it).
Every one of these is at or after the moment the segment's content ended, so the number is measured
from when the segment was safe, not from its last record; reading the record times (pg_waldump) would
cost a read of the segment per run. When the server has written nothing past the end of that segment
(its write position is that segment's end), nothing is at risk and the RPO is 0.

The backlog comes from the server: its write position (`pg_current_wal_lsn()`) against the end of the
newest archived segment gives the bytes not archived and the complete segments among them; the `.ready`
files in `pg_wal/archive_status` (`pg_ls_archive_statusdir()`, pg_monitor) are what the archiver still
has to ship. The archiver's failures are `pg_stat_archiver`'s (since its stats reset).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pgtool.status.durations import format_bytes, format_duration
from pgtool.status.model import Section, Thresholds

if TYPE_CHECKING:
    from pgtool.obs.metrics import RunReport

SOURCES = {
    "repo": "object last-modified time in the repository",
    "archive_dir": "file modification time in --archive-dir",
    "server": "pg_stat_archiver.last_archived_time",
}


def _epoch(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if iso else None


def _segment_end(name: str | None, segment_size: int) -> int | None:
    """The LSN where the archived file's segment ends; None for a history or partial file.

    A `.backup` file is archived after the segment its name carries (the archiver ships in name order),
    so that segment counts as archived.
    """
    from pgtool.wal.names import BACKUP, SEGMENT, parse_wal_name

    if not name:
        return None
    try:
        wal = parse_wal_name(name)
    except ValueError:
        return None
    if wal.kind not in (SEGMENT, BACKUP):
        return None
    return (wal.segno(segment_size) + 1) * segment_size


def _failing(data: dict[str, Any]) -> bool:
    """The archiver's last failure is newer than its last success (or it never succeeded)."""
    failed, archived = _epoch(data.get("last_failed_time")), _epoch(data.get("last_archived_time"))
    return bool(data.get("failed_count")) and failed is not None and (archived is None or failed > archived)


def _newest(archiver: Section, base: Section) -> tuple[str | None, float | None, str]:
    """(name, archived at, source): the archive's own newest segment when it was read, else the server's."""
    if base.data.get("newest_wal") and base.data.get("newest_wal_archived_at"):
        source = "repo" if "repo" in base.data else "archive_dir"
        return base.data["newest_wal"], _epoch(base.data["newest_wal_archived_at"]), source
    data = archiver.data
    return data.get("last_archived_wal"), _epoch(data.get("last_archived_time")), "server"


def measure_rpo(
    archiver: Section,
    base: Section,
    current_lsn: int | None,
    segment_size: int,
    *,
    now: float | None = None,
) -> dict[str, Any]:
    """The RPO, the backlog and the archiver's failures as plain facts (None: not known, with why)."""
    from pgtool.wal.names import format_lsn

    now = time.time() if now is None else now
    data = archiver.data
    out: dict[str, Any] = {
        "rpo_seconds": None,
        "rpo_source": None,
        "newest_archived_wal": None,
        "newest_archived_at": None,
        "backlog_segments": None,
        "backlog_bytes": None,
        "ready_files": data.get("waiting_segments"),
        "ready_files_hidden": data.get("waiting_segments_hidden"),
        "failed_count": data.get("failed_count"),
        "last_failed_wal": data.get("last_failed_wal"),
        "last_failed_time": data.get("last_failed_time"),
        "failing": _failing(data),
    }
    if archiver.skipped:
        out["rpo_unknown"] = f"not measured here ({archiver.note}): the primary archives"
        return out
    name, archived_at, source = _newest(archiver, base)
    out.update(newest_archived_wal=name, rpo_source=SOURCES[source])
    if name is None or archived_at is None:
        out["rpo_unknown"] = "no archived WAL segment seen (see Archiver and Base backups)"
        return out
    out["newest_archived_at"] = datetime.fromtimestamp(archived_at, UTC).isoformat()
    end = _segment_end(name, segment_size)
    if end is not None and current_lsn is not None:
        behind = max(0, current_lsn - end)
        out.update(
            backlog_bytes=behind,
            backlog_segments=max(0, current_lsn // segment_size - end // segment_size),
            newest_archived_end_lsn=format_lsn(end),
            current_lsn=format_lsn(current_lsn),
        )
    if out["backlog_bytes"] == 0:
        out["rpo_seconds"] = 0.0  # nothing written past the archived segment: nothing at risk
        out["nothing_written_since"] = True
    else:
        out["rpo_seconds"] = round(max(0.0, now - archived_at), 1)
        out["nothing_written_since"] = False
    return out


def rpo_lines(section: Section, rpo: dict[str, Any], thresholds: Thresholds) -> None:
    """The RPO's lines in the recoverability section, and the problem when it passes --max-rpo."""
    section.data.update(rpo)
    seconds = rpo["rpo_seconds"]
    if seconds is None:
        section.lines.append(f"RPO now: unknown, {rpo.get('rpo_unknown', 'see Archiver')}")
        return
    name = rpo["newest_archived_wal"]
    if rpo.get("nothing_written_since"):
        section.lines.append(
            f"RPO now: 0s, nothing written since {name} (archived {rpo['newest_archived_at']}, "
            f"{rpo['rpo_source']})"
        )
    else:
        section.lines.append(
            f"RPO now: {format_duration(seconds)} = now - when {name} was archived ({rpo['rpo_source']}); "
            "WAL written since is on the server only"
        )
    section.lines.append(_backlog_line(rpo))
    section.lines.append(_failures_line(rpo))
    if seconds > thresholds.max_rpo:
        section.problem(
            f"RPO is {format_duration(seconds)} (limit {format_duration(thresholds.max_rpo)}): "
            f"WAL after {name} is on the server only",
            _fix(rpo),
        )


def _backlog_line(rpo: dict[str, Any]) -> str:
    if rpo["backlog_bytes"] is None:
        line = "backlog: bytes not known (the server's write position or the segment's end is not known)"
    else:
        line = (
            f"backlog: {format_bytes(rpo['backlog_bytes'])} not archived, {rpo['backlog_segments']} complete "
            f"segments (server at {rpo['current_lsn']}, archive ends at {rpo['newest_archived_end_lsn']})"
        )
    if rpo["ready_files"] is not None:
        return line + f"; {rpo['ready_files']} .ready in pg_wal/archive_status"
    return line + f"; .ready files not visible ({rpo['ready_files_hidden']}; grant pg_monitor)"


def _failures_line(rpo: dict[str, Any]) -> str:
    if not rpo["failed_count"]:
        return "archiver failures: 0 since stats reset"
    return (
        f"archiver failures: {rpo['failed_count']} since stats reset, last {rpo['last_failed_wal']} at "
        f"{rpo['last_failed_time']}" + (", none archived since" if rpo["failing"] else "")
    )


def _fix(rpo: dict[str, Any]) -> str:
    if rpo["failing"]:
        return "archive_command is failing: read its error in the PostgreSQL log and fix it (see Archiver)"
    if rpo["backlog_segments"]:
        return "archiving is behind: check the archive target's speed and space, and the PostgreSQL log"
    return (
        "the current segment is not full yet: set archive_timeout (e.g. 300) so a quiet server's "
        "writes are archived within it"
    )


def record_rpo_gauges(report: RunReport, rpo: dict[str, Any]) -> None:
    """status's gauges (docs/metrics.md, job pgtool-status); an unknown value is not pushed."""
    gauges = (
        ("pgtool_rpo_seconds", "now - when the newest archived WAL segment was archived (0: nothing since)"),
        ("pgtool_archive_backlog_bytes", "WAL the server wrote past the end of the newest archived segment"),
        ("pgtool_archive_backlog_segments", "complete WAL segments not archived yet"),
        ("pgtool_archive_ready_files", ".ready files in pg_wal/archive_status"),
        ("pgtool_archiver_failed_count", "pg_stat_archiver.failed_count (since its stats reset)"),
    )
    keys = ("rpo_seconds", "backlog_bytes", "backlog_segments", "ready_files", "failed_count")
    for (name, documentation), key in zip(gauges, keys, strict=True):
        if rpo.get(key) is not None:
            report.gauge(name, documentation, float(rpo[key]))
    if rpo.get("failed_count") is not None:
        report.gauge(
            "pgtool_archiver_failing",
            "1 if the archiver's last failure is newer than its last success, else 0",
            1 if rpo["failing"] else 0,
        )
    if rpo.get("last_failed_time"):
        report.gauge(
            "pgtool_archiver_last_failed_timestamp_seconds",
            "when archive_command last failed (pg_stat_archiver.last_failed_time)",
            datetime.fromisoformat(rpo["last_failed_time"]).timestamp(),
        )
