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

verify checks such a dump with `verify_checks.TreeChecksum`: every file against the manifest and the
list, a missing, extra or changed file named in the failure.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from pgtool.durable_write import fsync_path
from pgtool.errors import UsageError
from pgtool.logical import dumps
from pgtool.logical.dump_job import DumpJob, DumpResult, DumpTask, dump_one
from pgtool.logical.dump_manifest import sha256_file
from pgtool.logical.dump_target import new_dump, publish
from pgtool.obs.logging import get_logger

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


def dump_database(task: DumpTask, dest: Path) -> DumpResult:
    """Dump one database into `dest/<database>/<...>.dir/`; never raises a PgtoolError."""
    from pgtool.logical.dumping import dump_in_snapshot

    def store(job: DumpJob) -> None:
        with new_dump(dest, task.database, dumps.DIR_SUFFIX) as (stamp, final, partial):
            snapshot = dump_in_snapshot(task, partial, args=pg_dump_args("directory", task.jobs_per_dump))
            files = hash_files(partial)
            for name in files:
                fsync_path(partial / name)
            fsync_path(partial, directory=True)
            size = dumps.dump_size(partial)
            manifest = job.manifest(final.name, stamp, size, tree_digest(files), snapshot, files=files)
            publish(partial, final, list_text(files, final.name + "/"), manifest)
        job.result.path = final
        job.stored(size, snapshot[0])
        get_logger().bind(database=task.database).info(
            "dump written", dir=str(final), files=len(files), size_bytes=size, duration_s=job.duration
        )

    return dump_one(task, store)


def remove(dump: Path) -> None:
    """Delete a directory dump: renamed to its hidden partial name first (one atomic step), so a run
    that dies midway leaves a leftover nothing lists, never a listed dump missing files."""
    hidden = dumps.partial_path(dump)
    os.replace(dump, hidden)
    shutil.rmtree(hidden)
