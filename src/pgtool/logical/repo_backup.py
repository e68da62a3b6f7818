"""`pgtool backup --repo`: each database's pg_dump streams straight into the backup repository.

Per database (the snapshot, the row counts and the parallelism are those of `pgtool.logical.dumping`):
pg_dump writes custom format to a pipe; a thread reads the pipe, hashes what it reads (the manifest's
sha256, which `verify` checks again after the download) and hands it to `Repository.put_stream`, which
encrypts, checksums and uploads it in 8 MiB parts (not compressed again: pg_dump's format already is).
No local copy is made. The upload is committed only when pg_dump exited 0 and the counts are done:
otherwise the chunk iterator raises at the pipe's end, the multipart upload is abandoned and nothing is
visible. Then `manifest.json` is created (`pgtool.logical.repo_catalog`: it marks the dump complete).
If the upload fails first (the store stops), the pipe is closed, pg_dump fails on its next write, and
the store's error is reported.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Unpack

from pgtool.errors import PgtoolError
from pgtool.logical import dump_directory, dumps, globals_dump, repo_catalog, repo_directory
from pgtool.logical.dump_job import DumpJob, DumpResult, DumpTask, Snapshot, dump_one
from pgtool.logical.dump_manifest import manifest_document
from pgtool.logical.dump_metrics import Newest
from pgtool.logical.dumping import (
    BackupOptions,
    BackupResult,
    backup_into,
    check_options,
    dump_in_snapshot,
    server_info,
)
from pgtool.logical.repo_lock import repo_lock
from pgtool.obs.logging import get_logger
from pgtool.pg import binaries
from pgtool.repo import Repository, dump_prefix

_READ = 1024 * 1024


class _NotCommitted(Exception):
    """Raised into the upload at the pipe's end when pg_dump or the counts failed: nothing is stored."""


def new_stamp(repo: Repository, database: str) -> str:
    """A stamp no object of this database uses yet (a run within the same second as the last waits)."""
    while True:
        stamp = dumps.format_stamp(datetime.now(UTC))
        if not repo.list(dump_prefix(database, stamp)):
            return stamp
        time.sleep(0.2)


class _Upload:
    """The thread that streams pg_dump's stdout (the read end of a pipe) into `name`."""

    def __init__(self, repo: Repository, name: str, read_fd: int) -> None:
        self.pipe = os.fdopen(read_fd, "rb")
        self.digest = hashlib.sha256()
        self.verdict: Future[bool] = Future()  # set by the dumping thread: commit or not
        self.done: Future[int] = Future()
        self._thread = threading.Thread(target=self._run, args=(repo, name), name="upload", daemon=True)
        self._thread.start()

    def _chunks(self) -> Iterator[bytes]:
        while block := self.pipe.read(_READ):
            self.digest.update(block)
            yield block
        if not self.verdict.result():
            raise _NotCommitted

    def _run(self, repo: Repository, name: str) -> None:
        try:
            # pg_dump's custom format is compressed already: a second zstd pass costs CPU beside
            # pg_dump for ~3% (benchdata/repo-dumps.md). Encryption and the checksum still apply.
            self.done.set_result(repo.put_stream(name, self._chunks(), compress=False))
        except BaseException as exc:
            self.done.set_exception(exc)
        finally:
            # pg_dump's next write fails (EPIPE) instead of blocking on a pipe nobody reads.
            self.pipe.close()

    def finish(self, ok: bool) -> int:
        """Tell the upload whether to commit, wait for it, return the content bytes or raise its error."""
        self.verdict.set_result(ok)
        self._thread.join()
        return self.done.result()


def dump_database(task: DumpTask, repo: Repository) -> DumpResult:
    """Dump one database into the repository; never raises a PgtoolError (it goes into the result)."""

    def store(job: DumpJob) -> None:
        stamp = new_stamp(repo, task.database)
        prefix = dump_prefix(task.database, stamp)
        target = prefix + repo_catalog.DUMP_OBJECT
        size, digest, snapshot = _stream_dump(task, repo, target)
        manifest = job.manifest(dumps.dump_name(task.database, stamp), stamp, size, digest, snapshot)
        try:
            repo.put_if_absent(prefix + repo_catalog.MANIFEST_OBJECT, manifest_document(manifest))
        except BaseException:
            # A dump without its manifest is never listed; remove it rather than leave it for an operator.
            with contextlib.suppress(PgtoolError):
                repo.delete(target)
            raise
        job.result.location = repo.where(target)
        job.stored(size, snapshot[0])
        get_logger().bind(database=task.database).info(
            "dump stored",
            object=job.result.location,
            size_bytes=size,
            duration_s=job.duration,
            tables=len(snapshot[0]),
        )

    return dump_one(task, store)


def _stream_dump(task: DumpTask, repo: Repository, target: str) -> tuple[int, str, Snapshot]:
    """pg_dump into `target` through a pipe; (content bytes, sha256, `dump_in_snapshot`'s result)."""
    read_fd, write_fd = os.pipe()
    try:
        upload = _Upload(repo, target, read_fd)
    except BaseException:
        os.close(read_fd)
        os.close(write_fd)
        raise
    ok = False
    dump_error: BaseException | None = None
    try:
        snapshot = dump_in_snapshot(task, None, stdout=write_fd)
        ok = True
    except BaseException as exc:
        dump_error = exc
    finally:
        os.close(write_fd)  # pg_dump has exited: the upload now sees the pipe's end
    try:
        size = upload.finish(ok)
    except _NotCommitted:
        assert dump_error is not None
        raise dump_error from None
    except BaseException:
        # The store failed first: pg_dump's broken pipe, if that is what it reported, is only the echo.
        if dump_error is not None and not isinstance(dump_error, PgtoolError | OSError):
            raise dump_error from None  # SIGTERM and the like win
        raise
    if dump_error is not None:  # cannot happen (the upload commits only when ok), kept for safety
        raise dump_error
    return size, upload.digest.hexdigest(), snapshot


def run_backup(dsn: str, repo: Repository, **options: Unpack[BackupOptions]) -> BackupResult:
    """`pgtool.logical.dumping.run_backup`, into a repository: the same results, metrics and rules.

    with_role_passwords: store the roles' password hashes with the globals (the CLI allows it only
    into an encrypted repository)."""
    check_options(options["jobs"], options["retention_days"])
    fmt, per_dump = options.get("dump_format", "custom"), options.get("jobs_per_dump", 1)
    dump_directory.check_format(fmt, per_dump)
    server, available = server_info(dsn)
    return backup_into(dsn, server, available, _Repo(repo, fmt), options)


class _Repo:
    """A repository: each database's dumps under its own prefix, the globals beside them
    (`dumping.Destination`)."""

    def __init__(self, repo: Repository, dump_format: str = "custom") -> None:
        self.repo, self.format = repo, dump_format
        self.about = {"repo": repo.url.display(), "format": dump_format}

    def lock(self, wait: bool) -> AbstractContextManager[object]:
        return repo_lock(self.repo, wait=wait)

    def dump(self, task: DumpTask) -> DumpResult:
        if self.format == "directory":  # spooled locally, then uploaded file by file
            return repo_directory.dump_database(task, self.repo)
        return dump_database(task, self.repo)

    def warn_leftovers(self, databases: list[str]) -> None:
        for db in databases:
            for left in repo_catalog.leftovers(self.repo, db):
                get_logger().warning(
                    "dump without a manifest left by an interrupted run",
                    object=self.repo.where(left.dump_object),
                    hint="delete it when convenient",
                )

    def store_globals(self, dsn: str, pg: binaries.PgBinaries, with_passwords: bool) -> str:
        return self.repo.where(globals_dump.store_in_repo(self.repo, dsn, pg, with_passwords=with_passwords))

    def retention(self, databases: list[str], days: int) -> list[Path | str]:
        removed: list[Path | str] = []
        for db in databases:
            removed += repo_catalog.apply_retention(self.repo, db, days)
        removed += globals_dump.retention_in_repo(self.repo, days)
        return removed

    def newest(self, database: str) -> Newest | None:
        return newest(self.repo, database)


def newest(repo: Repository, database: str) -> Newest | None:
    """The metrics' view of the newest complete dump of `database` (from its manifest)."""
    found = repo_catalog.complete_dumps(repo, database)
    if not found:
        return None
    last = found[-1]
    manifest = repo_catalog.read_json(repo, last.manifest_object) or {}
    finished = manifest.get("finished_at")
    try:
        when = datetime.fromisoformat(str(finished)).timestamp()
    except ValueError:
        when = last.taken_at.timestamp()
    size = manifest.get("dump_size_bytes")
    duration = manifest.get("duration_seconds")
    return Newest(
        when,
        size if isinstance(size, int) else last.size_bytes,
        float(duration) if isinstance(duration, int | float) else 0.0,
    )
