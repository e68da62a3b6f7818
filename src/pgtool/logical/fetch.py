"""`pgtool fetch`: copy a dump or the global objects out of a backup repository into a local file.

The recovery runbook (runbooks/postgres-recovery.md) restores with pg_restore and psql, which read local
files (pg_restore -j needs a seekable one). What lands on disk has passed every check a read makes
(`Repository.read_to_file`: the object's checksum or authentication, written 0600 and renamed into place
only once whole), and a dump's bytes are also checked against the sha256 its manifest recorded while
pg_dump wrote them. A file that fails is removed: nothing half-checked is left for pg_restore.

A directory-format dump (`--format directory`) is fetched into a directory, file by file, each checked
against the manifest's SHA-256 (`pg_restore -j N DIR` restores it).

Only complete dumps (a manifest stored, `pgtool.logical.repo_catalog`) are ever fetched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgtool.errors import OperationError, UsageError
from pgtool.logical import globals_dump, repo_catalog
from pgtool.logical.dump_manifest import sha256_file
from pgtool.repo import IntegrityError, ObjectAbsent, Repository, encode_db


class NothingToFetch(OperationError):
    """The repository holds no complete dump (or globals) matching the request."""


@dataclass(frozen=True)
class Fetched:
    """One object copied out: what it was, from where, to where."""

    what: str  # "dump" or "globals"
    database: str | None
    stamp: str
    source: str  # the object's location (repo.where)
    dest: Path
    size_bytes: int


def listing(repo: Repository) -> list[str]:
    """Every database with a complete dump, as its repository segment (`pgtool.repo.encode_db`): bytes
    outside [A-Za-z0-9_-] as %XX, so each line is safe to handle in a shell and decodes to the name."""
    return [encode_db(db) for db in repo_catalog.databases(repo) if repo_catalog.complete_dumps(repo, db)]


def _refuse_existing(dest: Path) -> None:
    # Never replace a file an operator may still need (an earlier fetch being restored from).
    if dest.exists() or dest.is_symlink():
        raise UsageError(f"{dest} already exists", hint="remove it or choose another --to")


def fetch_dump(repo: Repository, database: str, dest: Path, *, stamp: str | None = None) -> Fetched:
    """The newest complete dump of `database` (or the one stamped `stamp`) into `dest`.

    Raises NothingToFetch if there is none, UsageError if `dest` exists, IntegrityError if the content
    does not match its manifest's sha256 (then `dest` is removed), and the repository's errors."""
    _refuse_existing(dest)
    complete = repo_catalog.complete_dumps(repo, database)
    chosen = [d for d in complete if stamp is None or d.stamp == stamp]
    if not chosen:
        stamps = ", ".join(d.stamp for d in complete[-5:]) or "none"
        raise NothingToFetch(
            f"no complete dump of database {database!r}"
            + (f" stamped {stamp}" if stamp else "")
            + f" in {repo.url.display()} (newest stamps: {stamps})",
            hint="`pgtool fetch list` shows the databases that have one",
        )
    dump = chosen[-1]
    manifest = repo_catalog.read_json(repo, dump.manifest_object)
    expected = manifest.get("sha256") if manifest else None
    if not isinstance(expected, str):
        raise IntegrityError(f"{repo.where(dump.manifest_object)} records no sha256 for the dump")
    if dump.is_directory:
        size = _fetch_directory(repo, dump, manifest or {}, dest)
        return Fetched("dump", database, dump.stamp, repo.where(dump.dump_object), dest, size)
    size = repo.read_to_file(dump.dump_object, dest)
    if sha256_file(dest) != expected:
        with contextlib.suppress(OSError):
            os.unlink(dest)
        raise IntegrityError(
            f"{repo.where(dump.dump_object)} does not match the sha256 its manifest recorded",
            hint="the file was removed; fetch an older dump with --stamp",
        )
    return Fetched("dump", database, dump.stamp, repo.where(dump.dump_object), dest, size)


def _fetch_directory(
    repo: Repository, dump: repo_catalog.RepoDump, manifest: dict[str, Any], dest: Path
) -> int:
    """A directory-format dump (`--format directory`) into the directory `dest`, every file checked
    against the SHA-256 its manifest recorded (`pg_restore -j N dest` reads it); removed on failure."""
    recorded = manifest.get("files")
    files: dict[str, str] = recorded if isinstance(recorded, dict) else {}
    if set(files) != set(dump.dir_files):
        raise IntegrityError(f"{repo.where(dump.dump_object)} does not hold the files its manifest lists")
    dest.mkdir(mode=0o700)
    size = 0
    try:
        for name, digest in sorted(files.items()):
            size += repo.read_to_file(f"{dump.dump_object}/{name}", dest / name)
            if sha256_file(dest / name) != digest:
                raise IntegrityError(
                    f"{repo.where(dump.dump_object)}/{name} does not match the sha256 its manifest recorded",
                    hint="the directory was removed; fetch an older dump with --stamp",
                )
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return size


def fetch_globals(repo: Repository, dest: Path, *, stamp: str | None = None) -> Fetched:
    """The newest stored globals (pg_dumpall --globals-only), or the ones stamped `stamp`, into `dest`."""
    _refuse_existing(dest)
    if stamp is None:
        name = globals_dump.newest_from_repo(repo, dest)
        if name is None:
            raise NothingToFetch(
                f"no global objects stored in {repo.url.display()}",
                hint="pgtool backup --repo stores them with the dumps",
            )
    else:
        name = f"{globals_dump.REPO_PREFIX}{stamp}/{globals_dump.REPO_OBJECT}"
        try:
            repo.read_to_file(name, dest)
        except ObjectAbsent:
            raise NothingToFetch(f"no global objects stamped {stamp} in {repo.url.display()}") from None
    found_stamp = name[len(globals_dump.REPO_PREFIX) :].split("/", 1)[0]
    return Fetched("globals", None, found_stamp, repo.where(name), dest, dest.stat().st_size)
