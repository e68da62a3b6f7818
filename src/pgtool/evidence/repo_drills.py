"""`pgtool verify --repo` (dumps): the drill of `pgtool.logical.repo_verify`, then its evidence record in
the repository (`pgtool.evidence.repo_log`), pass or fail, exactly as `drills.verify_dumps` does for a
backup directory. A record that cannot be written fails the run."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pgtool.errors import OperationError, PgtoolError, UsageError, error_line
from pgtool.evidence import repo_log
from pgtool.evidence.drills import _common, _dump_entry, _restore_server_version, signer

if TYPE_CHECKING:
    from pgtool.logical.verify_dumps import VerifyResult
    from pgtool.obs.metrics import RunReport
    from pgtool.repo import Repository


def verify_dumps(
    dsn: str,
    repo: Repository,
    *,
    databases: list[str],
    amcheck: bool,
    jobs: int,
    pg_bindir: str | None,
    report: RunReport,
    key_file: Path | None = None,
) -> list[VerifyResult]:
    from pgtool.logical.repo_verify import run_verify

    sign = signer(key_file)
    started, clock = datetime.now(UTC), time.monotonic()
    results: list[VerifyResult] = []
    error: PgtoolError | None = None
    try:
        results = run_verify(
            dsn, repo, databases=databases, amcheck=amcheck, jobs=jobs, pg_bindir=pg_bindir, report=report
        )
    except UsageError:
        raise
    except PgtoolError as exc:
        error = exc
    failed = [r for r in results if not r.ok]
    message = (
        error_line(error) if error is not None else "; ".join(f"{r.database}: {r.error}" for r in failed)
    )
    body = _common("dump", started, time.monotonic() - clock)
    body.update(
        outcome="passed" if error is None and results and not failed else "failed",
        error=message or None,
        repo=repo.url.display(),
        postgres_version=_restore_server_version(dsn) if error is None else None,
        amcheck=amcheck,
        databases=[_entry(r, amcheck) for r in results],
    )
    try:
        repo_log.append(repo, body, sign)
    except OperationError as exc:
        also = f" (the drill itself failed: {message})" if message else ""
        raise OperationError(f"{exc.message}{also}", hint=exc.hint) from None
    if error is not None:
        raise error
    return results


def _entry(r: VerifyResult, amcheck: bool) -> dict[str, Any]:
    """The directory form's entry (checks), with the dump named by its object instead of a file."""
    entry = _dump_entry(dataclasses.replace(r, dump=None), amcheck)
    if r.location is not None:
        manifest = r.manifest or {}
        entry["dump"] = {
            "object": r.location,
            "stamp": manifest.get("stamp"),
            "sha256": manifest.get("sha256"),
            "source_server_version": manifest.get("server_version"),
            "pg_dump_version": manifest.get("pg_dump_version"),
        }
    return entry
