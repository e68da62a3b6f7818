"""Run every status check against one server and its backup locations."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pgtool.status.model import Section, StatusReport, Thresholds

if TYPE_CHECKING:
    from pgtool.obs.metrics import RunReport


@dataclass(frozen=True)
class StatusRequest:
    """What `pgtool status` was asked to look at."""

    dsn: str
    backup_dir: Path | None = None
    archive_dir: Path | None = None
    base_dir: Path | None = None
    repo: str | None = None  # replaces archive_dir and base_dir
    repo_key_file: str | None = None
    pooler_dsn: str | None = None
    pushgateway: str | None = None
    exclude_databases: list[str] = field(default_factory=list)
    k8s: str = "auto"
    k8s_namespace: str | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)


def collect_status(request: StatusRequest, report: RunReport | None = None) -> StatusReport:
    """Every section, in screen order. ConnectError (exit 3) when the server cannot be reached.

    report: where the RPO's gauges go (pushed by `status --push`)."""
    from pgtool.pg.conn import connect
    from pgtool.status import server
    from pgtool.status.dump_check import DATABASES_SQL, Expected, dumps_section, repo_dumps_section
    from pgtool.status.kube import kubernetes_section
    from pgtool.status.pooler import pooler_section
    from pgtool.status.recoverability import (
        BASE_JOB,
        newest_backup_start,
        read_current_lsn,
        recoverability_section,
    )
    from pgtool.status.rpo import measure_rpo, record_rpo_gauges
    from pgtool.status.verification import verification_section
    from pgtool.status.wal_window import base_backups_section
    from pgtool.wal.listing import DEFAULT_SEGMENT_SIZE

    t = request.thresholds
    checked_at = datetime.now(UTC).isoformat(timespec="seconds")
    sections: list[Section] = []
    with connect(request.dsn, autocommit=True, application_name="pgtool-status") as conn:
        info = server.read_server(conn)
        sections.append(server.server_section(info, t))
        archiver = server.archiver_section(conn, info, t)
        sections.append(archiver)
        databases = [r[0] for r in conn.execute(DATABASES_SQL).fetchall()]
        replication = server.replication_section(conn, info, t)
        transactions = server.transactions_section(conn, t)
        current_lsn = read_current_lsn(conn)
    segment_size = info["settings"].get("wal_segment_size")
    expected = Expected(databases, t, request.exclude_databases)
    if request.backup_dir is None and request.repo is not None:
        dumps = repo_dumps_section(request.repo, request.repo_key_file, expected)
    else:
        dumps = dumps_section(request.backup_dir, expected)
    sections.append(dumps)
    seg = int(segment_size) if segment_size and segment_size.isdigit() else None
    last = archiver.data.get("last_archived_wal")
    if request.repo is not None:
        from pgtool.status.repo_window import newest_start, repo_base_backups_section

        base = repo_base_backups_section(
            request.repo, request.repo_key_file, t, server_segment_size=seg, last_archived_wal=last
        )
        newest = newest_start(base)
    else:
        base = base_backups_section(
            request.base_dir, request.archive_dir, t, server_segment_size=seg, last_archived_wal=last
        )
        newest = newest_backup_start(request.base_dir)
    sections.append(base)
    verification = verification_section(request.pushgateway, t)
    sections.append(verification)
    rpo = measure_rpo(archiver, base, current_lsn, seg or DEFAULT_SEGMENT_SIZE)
    if report is not None:
        record_rpo_gauges(report, rpo)
    sections.append(
        recoverability_section(
            verification.data.get("jobs", {}).get(BASE_JOB),
            rpo,
            current_lsn,
            newest,
            pushgateway=request.pushgateway,
            thresholds=t,
        )
    )
    sections.append(replication)
    sections.append(transactions)
    sections.append(pooler_section(request.pooler_dsn, t))
    sections.append(kubernetes_section(request.k8s, request.k8s_namespace))
    return StatusReport(checked_at=checked_at, sections=sections)
