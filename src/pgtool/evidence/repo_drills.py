"""`pgtool verify --repo` (dumps): the drill of `pgtool.logical.repo_verify`, then its evidence record in
the repository (`pgtool.evidence.repo_log`), pass or fail, exactly as `drills.verify_dumps` does for a
backup directory. A record that cannot be written fails the run."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack

from pgtool.evidence import repo_log
from pgtool.evidence.drills import Drilled, _dump_entry, append_or_fail, dump_body, signer

if TYPE_CHECKING:
    from pgtool.logical.verify_dumps import VerifyOptions, VerifyResult
    from pgtool.repo import Repository


def verify_dumps(
    dsn: str, repo: Repository, *, key_file: Path | None = None, **options: Unpack[VerifyOptions]
) -> list[VerifyResult]:
    from pgtool.logical.repo_verify import run_verify

    sign = signer(key_file)
    drilled = Drilled.run(lambda: run_verify(dsn, repo, **options))
    body = dump_body(dsn, drilled, options["amcheck"], {"repo": repo.url.display()}, _entry)
    append_or_fail(lambda: repo_log.append(repo, body, sign), body["error"])
    return drilled.outcome()


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
