"""The base-backup restore drill (`verify --base`) over a backup repository (`--repo`).

The newest complete base backup in the repository (with its whole chain when it is incremental) is
downloaded, every object verified, into a scratch directory (its size checked against the free space
first), and the drill of `pgtool.physical.base_drill` runs on it with the repository as its WAL archive:
the gap check and the archive's end are computed from the repository's listing (the one archive model),
pg_waldump reads verified copies of the objects it needs, and the throwaway server's restore_command is
`pgtool restore-wal --repo URL`, so every replayed segment is verified by restore-wal. The scratch
directory is removed whatever happens.

The throwaway server inherits this process's environment: the AWS_* / AZURE_STORAGE_* credentials and
PGTOOL_REPO_KEY_FILE that opened the repository reach its restore-wal too.
"""

from __future__ import annotations

from pathlib import Path

from pgtool.errors import OperationError
from pgtool.obs.metrics import RunReport
from pgtool.physical.base_drill import BaseDrillResult, run_base_drill


def run_repo_base_drill(
    url: str,
    key_file: str | None = None,
    *,
    pg_bindir: str | None,
    amcheck: bool,
    report: RunReport,
    work_dir: Path | None = None,
) -> BaseDrillResult:
    """Drill the newest base backup in the repository at `url` (see the module docstring).

    key_file: the repository's key file (None: $PGTOOL_REPO_KEY_FILE, read by open_repository and,
    through the inherited environment, by the server's restore-wal). work_dir: parent of the scratch
    download and of the throwaway cluster (default: the system temp dir). Raises like
    `run_base_drill` (FindingsError when the drill ran and failed; OperationError when there is
    nothing to drill, the WAL has a gap, or there is no room), plus `pgtool.repo` errors (RepoError
    for an unreachable store or a damaged object, RepoUsageError for a malformed URL: exit 2).
    """
    from pgtool.physical import repo_catalog
    from pgtool.physical.base_chain import chain_of
    from pgtool.recovery.repo_base import scratch_chain
    from pgtool.recovery.wal_source import RepoArchive
    from pgtool.repo import open_repository

    repo = open_repository(url, key_file=key_file, create=False)
    backups = repo_catalog.list_base_backups(repo)
    if not backups:
        raise OperationError(
            f"no complete base backup in repository {repo.url.display()}",
            hint="take one with pgtool basebackup --repo",
        )
    chain = chain_of(backups, backups[-1])  # a broken chain is refused before any download
    with scratch_chain(repo, chain, work_dir) as scratch:
        return run_base_drill(
            scratch,
            RepoArchive(repo, key_file),
            pg_bindir=pg_bindir,
            amcheck=amcheck,
            report=report,
            work_dir=work_dir,
        )
