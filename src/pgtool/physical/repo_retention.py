"""Retention of base backups and pruning of WAL in a backup repository (`basebackup --repo`).

The rules are the directory's (`base_retention`), applied to objects: `doomed_backups` chooses the
backups to delete (all but the newest `keep` complete ones, never one on a newer timeline than the
newest backup's, so the newest complete backup always survives), `wal_boundary` the kept backup whose
start WAL file is the oldest the archive must keep, and `prunable` the WAL objects older than it
(never `.history` objects, never a timeline newer than the boundary backup's).

Order: backups are deleted first (`repo_catalog.delete`: the metadata object first, so a half-deleted
backup is no longer listed), then WAL, so an interrupted run never leaves a listed backup without its
WAL. Only complete backups are listed, so an upload in progress or killed is neither counted nor
deleted.
"""

from __future__ import annotations

from pgtool.obs.logging import get_logger
from pgtool.physical import repo_catalog
from pgtool.physical.base_retention import RetentionOutcome, doomed_backups, prunable, wal_boundary
from pgtool.repo import Repository
from pgtool.wal.repo_archive import RepoWal


def apply_repo_retention(repo: Repository, *, keep: int) -> RetentionOutcome:
    """Delete complete backups beyond the newest `keep`, then prune the WAL no kept backup needs."""
    log = get_logger().bind(repo=repo.url.display())
    complete = repo_catalog.list_base_backups(repo)
    doomed = doomed_backups(complete, keep)
    outcome = RetentionOutcome(kept=[b for b in complete if b.id not in {d.id for d in doomed}])
    for info in doomed:
        repo_catalog.delete(repo, info.id)
        outcome.deleted.append(info.id)
        log.info("base backup deleted by retention", backup=info.id)
    boundary = wal_boundary(outcome.kept)
    if boundary is None:
        return outcome
    outcome.wal_boundary = boundary.start_wal_file
    files = RepoWal(repo).list_archive()
    for item in prunable(files, boundary.start_wal_file, max_timeline=boundary.timeline):
        repo.delete(item.path)
        outcome.wal_pruned.append(item.name)
    if outcome.wal_pruned:
        log.info(
            "archived WAL pruned",
            removed=len(outcome.wal_pruned),
            oldest_kept=boundary.start_wal_file,
            for_backup=boundary.id,
        )
    return outcome
