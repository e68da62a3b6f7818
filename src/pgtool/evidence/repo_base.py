"""`pgtool verify --base --repo`: the base drill over a repository (`pgtool.physical.repo_drill`), then its
evidence record in the repository under `evidence/base/` (`pgtool.evidence.repo_log`), pass or fail, with
the same body as `drills.verify_base` writes for a base-backup directory. A record that cannot be written
fails the run: a drill without its evidence must never look like a success."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pgtool.evidence import repo_log
from pgtool.evidence.drills import Drilled, append_or_fail, backup_fields, base_body, signer

if TYPE_CHECKING:
    from pgtool.obs.metrics import RunReport
    from pgtool.physical.base_drill import BaseDrillResult
    from pgtool.repo import Repository

PREFIX = "evidence/base/"


def verify_base_repo(
    url: str,
    repo_key_file: str | None,
    *,
    pg_bindir: str | None,
    amcheck: bool,
    report: RunReport,
    key_file: Path | None = None,
) -> BaseDrillResult:
    """Drill the newest base backup in the repository at `url` and record the drill there."""
    from pgtool.physical.repo_drill import run_repo_base_drill
    from pgtool.repo import open_repository

    sign = signer(key_file)
    repo = open_repository(url, key_file=repo_key_file, create=False)
    drilled = Drilled.run(
        lambda: run_repo_base_drill(url, repo_key_file, pg_bindir=pg_bindir, amcheck=amcheck, report=report)
    )
    where = {"repo": repo.url.display()}
    body = base_body(drilled, amcheck, where, _backup_entry(repo, drilled.result))
    append_or_fail(lambda: repo_log.append(repo, body, sign, prefix=PREFIX), body["error"])
    return drilled.outcome()


def _backup_entry(repo: Repository, result: BaseDrillResult | None) -> dict[str, Any] | None:
    """The drilled backup (or, when the drill failed early, the newest one, which it was about to drill)."""
    from pgtool.physical import repo_catalog
    from pgtool.physical.base_catalog import MANIFEST_FILE
    from pgtool.repo import RepoError, base_prefix

    try:
        backups = repo_catalog.list_base_backups(repo)
    except RepoError:
        return None
    chosen = [b for b in backups if result is None or b.id == result.backup_id]
    if not chosen:
        return None
    b = chosen[-1]
    entry = backup_fields(b, object=repo.where(base_prefix(b.id)))
    # backup_manifest lists every file's checksum and ends with its own: its SHA-256 pins the backup.
    try:
        digest = hashlib.sha256()
        for chunk in repo.open(base_prefix(b.id) + MANIFEST_FILE):
            digest.update(chunk)
        entry["backup_manifest_sha256"] = digest.hexdigest()
    except RepoError:
        entry["backup_manifest_sha256"] = None
    return entry
