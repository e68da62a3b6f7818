"""Directory-format dumps in a repository (`pgtool backup --repo --format directory --jobs-per-dump N`).

pg_dump -Fd -j N writes files, not a stream, so unlike a custom-format dump (streamed, no local copy,
`pgtool.logical.repo_backup`) a directory dump needs a local spool: pg_dump writes into a private
temporary directory under $TMPDIR (mode 0700), bounded by a check before pg_dump starts (free space
there at least the database's size, `pg_database_size`: a dump holds no indexes and is compressed, so
it stays below that). Once pg_dump exited 0 and the counts are done, every file is hashed and uploaded
as its own object under `dumps/<db>/<stamp>/dir/<file>` (compressed, checksummed, encrypted like any
object), `toc.dat` last, then `manifest.json` (with each file's SHA-256, as in a backup directory:
`pgtool.logical.dump_directory`), which marks the dump complete. The spool is removed whatever
happens; if an upload fails, the objects already uploaded are deleted.

`verify --repo` downloads every file of the newest dump into its own scratch directory, then runs the
drill on it as on a backup directory: every file checked against the manifest, then `pg_restore -j`.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pgtool.errors import OperationError, PgtoolError
from pgtool.free_space import require_free
from pgtool.logical import dump_directory, dumps, repo_catalog
from pgtool.logical.dump_job import DumpJob, DumpResult, DumpTask, dump_one
from pgtool.logical.dump_manifest import manifest_document
from pgtool.logical.dump_sessions import one_row, session
from pgtool.obs.logging import get_logger
from pgtool.repo import RepoError, Repository, dump_prefix

SIZE_SQL = "SELECT pg_catalog.pg_database_size(pg_catalog.current_database())"


def _spool(dsn: str, database: str) -> Path:
    """A private temporary directory with room for the dump, or OperationError saying why not."""
    with session(dsn, dbname=database, application_name="pgtool-backup") as conn:
        (size,) = one_row(conn, SIZE_SQL)
    spool = Path(tempfile.mkdtemp(prefix="pgtool-dump-"))
    try:
        require_free(
            spool,
            int(size),
            "to spool the directory dump (the database's size)",
            hint="point TMPDIR at a volume with room for the database, or use --format custom",
        )
    except OperationError:
        shutil.rmtree(spool, ignore_errors=True)
        raise
    return spool


def dump_database(task: DumpTask, repo: Repository) -> DumpResult:
    """Dump one database (directory format) into the repository; never raises a PgtoolError."""
    from pgtool.logical.dumping import dump_in_snapshot
    from pgtool.logical.repo_backup import new_stamp

    def store(job: DumpJob) -> None:
        stamp = new_stamp(repo, task.database)  # when the dump starts, as for a custom-format dump
        prefix = dump_prefix(task.database, stamp)
        spool = _spool(task.dsn, task.database)
        try:
            out = spool / "dump"  # pg_dump -Fd creates the directory itself
            args = dump_directory.pg_dump_args("directory", task.jobs_per_dump)
            snapshot = dump_in_snapshot(task, out, args=args)
            files = dump_directory.hash_files(out)
            size = dumps.dump_size(out)
            digest = dump_directory.tree_digest(files)
            name = dumps.dir_dump_name(task.database, stamp)
            manifest = job.manifest(name, stamp, size, digest, snapshot, files=files)
            _upload(repo, prefix, out, files, manifest)
        finally:
            shutil.rmtree(spool, ignore_errors=True)
        job.result.location = repo.where(prefix + repo_catalog.DIR + "/")
        job.stored(size, snapshot[0])
        get_logger().bind(database=task.database).info(
            "dump stored", object=job.result.location, files=len(files), size_bytes=size
        )

    return dump_one(task, store)


def _upload(
    repo: Repository, prefix: str, out: Path, files: dict[str, str], manifest: dict[str, Any]
) -> None:
    """Each file (toc.dat last), then the manifest; on failure, what was uploaded is deleted."""
    order = sorted(files, key=lambda f: (f == repo_catalog.TOC_FILE, f))
    done: list[str] = []
    try:
        for name in order:
            target = f"{prefix}{repo_catalog.DIR}/{name}"
            done.append(target)
            repo.put_file(target, out / name)
        repo.put_if_absent(prefix + repo_catalog.MANIFEST_OBJECT, manifest_document(manifest))
    except BaseException:
        for target in reversed(done):  # toc.dat first: what is left is never listed as complete
            with contextlib.suppress(PgtoolError):
                repo.delete(target)
        raise


def download(repo: Repository, found: repo_catalog.RepoDump, manifest: dict[str, Any], db_dir: Path) -> Path:
    """The dump's files into `db_dir/<db>-<stamp>.dir/` with its manifest and list beside it, in the
    layout the drill reads; a file that fails its object check is a VerifyFailure naming it."""
    from pgtool.logical.verify_checks import VerifyFailure

    local = db_dir / dumps.dir_dump_name(found.database, found.stamp)
    local.mkdir(mode=0o700)
    recorded = manifest.get("files")
    listed: dict[str, str] = recorded if isinstance(recorded, dict) else {}
    dumps.manifest_path(local).write_text(json.dumps(manifest))
    dumps.checksum_path(local).write_text(dump_directory.list_text(listed, local.name + "/"))
    for name in found.dir_files:
        try:
            repo.read_to_file(f"{found.prefix}{repo_catalog.DIR}/{name}", local / name)
        except RepoError as exc:
            raise VerifyFailure(exc.one_line()) from None
    return local
