"""What one `pgtool basebackup` run asks for, whichever the destination (a directory or a repository):
the options `take_base_backup` and `take_repo_base_backup` share, declared once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pgtool.obs.metrics import RunReport


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
