"""Directory-format dumps (`pgtool backup --format directory --jobs-per-dump N`): `pg_dump -Fd -j N`.

For a database too large for one pg_dump process: pg_dump's workers dump N tables at a time, each into
its own file (`toc.dat` plus one `<dump id>.dat.gz` per table). pg_dump -j splits by table, so a single
huge table is still one worker's job.

In a backup directory the dump is `DEST/<db>/<db>-<stamp>.dir/`: pg_dump writes a hidden
`.<db>-<stamp>.dir.partial/`; only when it exits 0 (and the counts are done) is every file hashed and
fsynced, the list `<db>-<stamp>.dir.sha256` (one `sha256sum` line per file, `sha256sum -c` checks it
from the database directory) and the manifest written, then the directory is renamed to its final name.
The manifest records `dump_format: "directory"`, `files` ({file name: SHA-256}) and, as `sha256`, the
SHA-256 of the canonical list (`tree_digest`), which the verified record names like any dump's.

`TreeChecksum` is verify's check of such a dump: every file against the manifest and the list, a
missing, extra or changed file named in the failure.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import threading
from pathlib import Path
from typing import Any

from pgtool.durable_write import fsync_path
from pgtool.errors import UsageError
from pgtool.logical import dumps
from pgtool.logical.dump_job import DumpJob, DumpResult, ServerInfo, dump_one
from pgtool.logical.dump_manifest import sha256_file, write_durably, write_manifest
from pgtool.obs.logging import get_logger
from pgtool.pg import binaries

FORMATS = ("custom", "directory")
MAX_JOBS_PER_DUMP = 64


def check_format(dump_format: str, jobs_per_dump: int) -> None:
    if dump_format not in FORMATS:
        raise UsageError(f"--format must be one of: {', '.join(FORMATS)}")
    if not 1 <= jobs_per_dump <= MAX_JOBS_PER_DUMP:
        raise UsageError(f"--jobs-per-dump must be between 1 and {MAX_JOBS_PER_DUMP}")
    if jobs_per_dump > 1 and dump_format != "directory":
        raise UsageError("--jobs-per-dump needs --format directory (pg_dump -j writes directory format only)")


def pg_dump_args(dump_format: str, jobs_per_dump: int) -> list[str]:
    if dump_format == "directory":
        return ["--format=directory", f"--jobs={jobs_per_dump}"]
    return ["--format=custom"]


def hash_files(directory: Path) -> dict[str, str]:
    """{file name: SHA-256} of every file in a dump directory (pg_dump -Fd writes no subdirectories)."""
    return {p.name: sha256_file(p) for p in sorted(directory.iterdir()) if p.is_file()}


def list_text(files: dict[str, str], prefix: str = "") -> str:
    """`sha256sum` lines, one per file, sorted by name; `prefix` goes before each name."""
    return "".join(f"{digest}  {prefix}{name}\n" for name, digest in sorted(files.items()))


def tree_digest(files: dict[str, str]) -> str:
    """The dump's one SHA-256: of the canonical list (bare names), so it changes with any file."""
    return hashlib.sha256(list_text(files).encode()).hexdigest()


def read_list(path: Path) -> dict[str, str] | None:
    """{file name: digest} from a `.dir.sha256` list (names relative to the dump directory), or None."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return None
    out: dict[str, str] = {}
    for line in text.splitlines():
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64:
            return None
        out[name.split("/", 1)[-1]] = digest.lower()
    return out or None


def dump_database(
    dsn: str,
    database: str,
    dest: Path,
    pg: binaries.PgBinaries,
    server: ServerInfo,
    jobs_per_dump: int,
    *,
    stop: threading.Event,
) -> DumpResult:
    """Dump one database into `dest/<database>/<...>.dir/`; never raises a PgtoolError."""
    from pgtool.logical.dumping import dump_in_snapshot, new_target

    def store(job: DumpJob) -> None:
        db_dir = dumps.database_dir(dest, database)
        db_dir.mkdir(parents=True, exist_ok=True)
        stamp, final = new_target(db_dir, database, dumps.DIR_SUFFIX)
        partial: Path | None = dumps.partial_path(final)
        assert partial is not None
        try:
            snapshot = dump_in_snapshot(
                dsn, database, partial, pg, stop, args=pg_dump_args("directory", jobs_per_dump)
            )
            files = hash_files(partial)
            for name in files:
                fsync_path(partial / name)
            fsync_path(partial, directory=True)
            size = dumps.dump_size(partial)
            digest = tree_digest(files)
            manifest = job.manifest(final.name, stamp, size, digest, snapshot)
            manifest.update(dump_format="directory", files=files)
            checksum = dumps.checksum_path(final)
            write_durably(checksum, list_text(files, final.name + "/").encode())
            try:
                write_manifest(dumps.manifest_path(final), manifest)
            except BaseException:
                with contextlib.suppress(OSError):
                    checksum.unlink()
                raise
            # The rename comes last: a final-named dump always has its list and manifest beside it.
            os.replace(partial, final)
            partial = None
        finally:
            if partial is not None:
                shutil.rmtree(partial, ignore_errors=True)
        fsync_path(db_dir, directory=True)
        job.result.path = final
        job.stored(size, snapshot[0])
        get_logger().bind(database=database).info(
            "dump written", dir=str(final), files=len(files), size_bytes=size, duration_s=job.duration
        )

    return dump_one(database, server, pg, stop, store)


def remove(dump: Path) -> None:
    """Delete a directory dump: renamed to its hidden partial name first (one atomic step), so a run
    that dies midway leaves a leftover nothing lists, never a listed dump missing files."""
    hidden = dumps.partial_path(dump)
    os.replace(dump, hidden)
    shutil.rmtree(hidden)


class TreeChecksum:
    """verify's check of a directory dump (the interface of `verify_checks.Checksum`): every file
    hashed in a thread while the TOC is read and the dump restored, compared with the manifest's
    `files` and the `.dir.sha256` list; `check()` names the first file that differs."""

    def __init__(self, dump: Path, listed: dict[str, str], manifest: dict[str, Any]) -> None:
        self.dump, self.listed = dump, listed
        files = manifest.get("files")
        self.recorded: dict[str, str] = files if isinstance(files, dict) else {}
        self.manifest_sha = manifest.get("sha256")
        from pgtool.logical.verify_checks import in_background

        self._job = in_background(lambda: hash_files(dump))

    def check(self) -> str:
        from pgtool.logical.verify_checks import VerifyFailure

        try:
            actual = self._job.result()
        except OSError as exc:
            raise VerifyFailure(f"cannot read {self.dump}: {exc.strerror or exc}") from None
        if not self.recorded:
            raise VerifyFailure("manifest: a directory dump without its list of files")
        for name, digest in sorted(self.recorded.items()):
            if name not in actual:
                raise VerifyFailure(f"file {name} missing from {self.dump.name}")
            if actual[name] != digest:
                raise VerifyFailure(
                    f"checksum mismatch in {self.dump.name}/{name}: the file hashes to "
                    f"{actual[name][:12]}..., the manifest says {digest[:12]}..."
                )
        extra = sorted(set(actual) - set(self.recorded))
        if extra:
            raise VerifyFailure(f"file {extra[0]} in {self.dump.name} is not in the manifest")
        if self.listed != self.recorded:
            listing = dumps.checksum_path(self.dump).name
            raise VerifyFailure(f"checksum list {listing} differs from the manifest")
        digest = tree_digest(actual)
        if self.manifest_sha != digest:
            raise VerifyFailure("checksum mismatch: the manifest's sha256 differs from its list of files")
        return digest
