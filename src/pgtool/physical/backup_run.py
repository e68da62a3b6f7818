"""One `pgtool basebackup` run, whichever the destination (a directory or a repository): the options
`take_base_backup` and `take_repo_base_backup` share, and the result both report, declared once."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from pgtool.obs.logging import get_logger

if TYPE_CHECKING:
    from pgtool.obs.metrics import RunReport
    from pgtool.physical import base_catalog
    from pgtool.physical.base_retention import RetentionOutcome


@dataclass(frozen=True)
class BackupRun:
    """keep: complete backups to keep (at least 1); compress: a `COMPRESS_CHOICES` value; incremental:
    against the newest backup (`base_incremental`; fallback `full` takes a full backup when the server
    cannot); window: retention's recovery window (`base_retention`); report: where the run's metrics go."""

    keep: int = 4
    compress: str = "auto"
    pg_bindir: str | None = None
    report: RunReport | None = None
    incremental: bool = False
    fallback: str = "refuse"
    window: timedelta | None = None


@dataclass
class BaseBackupResult:
    """What one `pgtool basebackup` run did."""

    backup: base_catalog.BaseBackupInfo
    kept: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    wal_pruned: list[str] = field(default_factory=list)
    segments_pruned: int = 0
    incomplete: list[str] = field(default_factory=list)


def finish(
    info: base_catalog.BaseBackupInfo,
    outcome: RetentionOutcome,
    incomplete: list[str],
    report: RunReport | None,
) -> BaseBackupResult:
    """The run's result, from the new backup and what retention did, logged and recorded."""
    result = BaseBackupResult(
        backup=info,
        kept=[b.id for b in outcome.kept],
        deleted=outcome.deleted,
        wal_pruned=outcome.wal_pruned,
        segments_pruned=outcome.segments_pruned,
        incomplete=incomplete,
    )
    report_result(result, report)
    return result


def report_result(result: BaseBackupResult, report: RunReport | None) -> None:
    if result.incomplete:
        get_logger().warning("incomplete base backups left by interrupted runs", entries=result.incomplete)
    if report is None:
        return
    report.gauge("pgtool_basebackup_size_bytes", "Size of the new base backup", result.backup.size_bytes)
    report.gauge("pgtool_basebackup_kept_count", "Complete base backups kept", len(result.kept))
    report.gauge(
        "pgtool_basebackup_wal_segments_pruned", "Archived WAL segments removed", result.segments_pruned
    )
