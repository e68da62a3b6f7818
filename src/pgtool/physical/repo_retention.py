"""Retention of base backups and pruning of WAL in a backup repository (`basebackup --repo`).

The rules are the directory's (`base_retention`), applied to objects: `plan_retention` chooses the
backups to delete (all but the newest `keep` complete ones, the chains kept incrementals need and, with
a recovery window, what recovering to any moment of it needs; never one on a newer timeline than the
newest backup's, so the newest complete backup always survives) and the kept backup whose start WAL
file is the oldest the archive must keep, and `prunable` the WAL objects older than it (never
`.history` objects, never a timeline newer than the boundary backup's).

Order: backups are deleted first (`repo_catalog.delete`: the metadata object first, so a half-deleted
backup is no longer listed), then WAL, so an interrupted run never leaves a listed backup without its
WAL. Only complete backups are listed, so an upload in progress or killed is neither counted nor
deleted.
"""

from __future__ import annotations

from datetime import timedelta

from pgtool.obs.logging import get_logger
from pgtool.physical import repo_catalog
from pgtool.physical.base_catalog import BaseBackupInfo
from pgtool.physical.base_retention import RetentionOutcome, carry_out, plan_retention, prunable
from pgtool.repo import Repository
from pgtool.wal.repo_archive import RepoWal


def apply_repo_retention(
    repo: Repository, *, keep: int, window: timedelta | None = None, dry_run: bool = False
) -> RetentionOutcome:
    """Delete what `plan_retention` dooms, then prune the WAL no kept backup needs (dry_run: only list)."""

    def prune(boundary: BaseBackupInfo) -> list[str]:
        pruned = []
        for item in prunable(
            RepoWal(repo).list_archive(), boundary.start_wal_file, max_timeline=boundary.timeline
        ):
            if not dry_run:
                repo.delete(item.path)
            pruned.append(item.name)
        return pruned

    log = get_logger().bind(repo=repo.url.display())
    plan = plan_retention(repo_catalog.list_base_backups(repo), keep, window)
    return carry_out(plan, log, lambda info: repo_catalog.delete(repo, info.id), prune, dry_run=dry_run)
