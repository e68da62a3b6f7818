"""`pgtool verify --repo`: the dump drill (`pgtool.logical.verify_dumps`) on dumps in a repository.

pg_restore needs a seekable file (custom format is read out of order, and `-j` needs it), so per
database the newest complete dump is downloaded into a private temporary directory (under $TMPDIR),
one database at a time, and removed as soon as its drill ends, whatever happens (failure, SIGTERM).
Before downloading, the free space there is checked against the dump's size from its manifest plus a
margin: a full disk is one clear error, not a half-written file. `Repository.read_to_file` verifies the
object's checksum (or authentication) before the file appears under its name, so a damaged, truncated
or tampered dump is an IntegrityError naming the object and is never restored.

A directory-format dump is downloaded file by file (`pgtool.logical.repo_directory`). The drill then
runs on the local copy exactly as on a backup directory, including its own SHA-256 check
against the manifest's (computed from pg_dump's output at backup time). A dump that passes gets
`verified.json` in the repository (retention keeps the newest verified dump); one that fails loses it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Unpack

from pgtool.errors import OperationError, PgtoolError
from pgtool.free_space import require_free
from pgtool.logical import dumps, repo_catalog, repo_directory
from pgtool.logical.dump_manifest import checksum_line
from pgtool.logical.verify_checks import VerifyFailure
from pgtool.logical.verify_dumps import (
    Run,
    VerifyOptions,
    VerifyResult,
    check_jobs,
    drill,
    drill_each,
    verdict,
    verify_with,
)
from pgtool.repo import RepoError, Repository

# Room left beside the download: pg_restore's and the system's own temporary files.
SPACE_MARGIN = 64 * 1024 * 1024


def run_verify(dsn: str, repo: Repository, **options: Unpack[VerifyOptions]) -> list[VerifyResult]:
    """Verify the newest complete dump of each database in `repo` (all, or those named)."""
    check_jobs(options["jobs"])
    targets = list(dict.fromkeys(options["databases"])) or repo_catalog.databases(repo)
    if not targets:
        raise OperationError(f"no dumps found in {repo.url.display()}", hint="run pgtool backup --repo first")
    scratch_root = Path(tempfile.gettempdir())

    def verify_one(run: Run, database: str) -> VerifyResult:
        return verify_database(run, repo, database)

    return drill_each(dsn, scratch_root, targets, verify_one, options)


def verify_database(run: Run, repo: Repository, database: str) -> VerifyResult:
    """Download, drill and mark one database's newest dump; failures go into the result."""

    def check(result: VerifyResult) -> None:
        complete = repo_catalog.complete_dumps(repo, database)
        if not complete:
            raise VerifyFailure(f"no complete dump of this database in {repo.url.display()}")
        found = complete[-1]
        result.location = repo.where(found.dump_object)
        try:
            digest = _download_and_drill(run, repo, found, result)
        except (PgtoolError, OSError):
            with contextlib.suppress(PgtoolError):
                repo.delete(found.verified_object)  # a dump that once verified does not any more
            raise
        record = {
            "format": "pgtool-dump-verified",
            "version": 1,
            "stamp": found.stamp,
            "dump_object": found.dump_object,
            **verdict(run, result, digest),
        }
        # A record from an earlier drill is replaced: objects are never overwritten, so delete first.
        repo.delete(found.verified_object)
        repo.put_if_absent(found.verified_object, (json.dumps(record, indent=2) + "\n").encode())

    return verify_with(database, check, lambda result: {"object": result.location or ""})


def _download_and_drill(
    run: Run, repo: Repository, found: repo_catalog.RepoDump, result: VerifyResult
) -> str:
    """The local copy in the directory layout `drill` reads, the drill, the copy removed; the digest."""
    manifest = repo_catalog.read_json(repo, found.manifest_object)
    if manifest is None:
        raise VerifyFailure(f"manifest unreadable: {repo.where(found.manifest_object)} is not a JSON object")
    result.manifest = manifest
    digest = manifest.get("sha256")
    if not isinstance(digest, str):
        raise VerifyFailure(f"manifest {repo.where(found.manifest_object)} holds no sha256")
    size = manifest.get("dump_size_bytes")
    need = (size if isinstance(size, int) and size >= 0 else found.size_bytes) + SPACE_MARGIN
    scratch = Path(tempfile.mkdtemp(prefix="pgtool-verify-"))
    try:
        require_free(
            scratch,
            need,
            f"to download {repo.where(found.dump_object)}",
            hint="point TMPDIR at a volume with room for the largest dump",
        )
        db_dir = scratch / dumps.encode_name(found.database)
        db_dir.mkdir()
        if manifest.get("dump_format") == "directory" or found.is_directory:
            result.dump = repo_directory.download(repo, found, manifest, db_dir)
            return drill(run, found.database, result.dump, result)
        local = db_dir / dumps.dump_name(found.database, found.stamp)
        dumps.manifest_path(local).write_text(json.dumps(manifest))
        dumps.checksum_path(local).write_text(checksum_line(digest, local.name))
        try:
            repo.read_to_file(found.dump_object, local)
        except RepoError as exc:
            raise VerifyFailure(exc.one_line()) from None
        result.dump = local
        return drill(run, found.database, local, result)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
