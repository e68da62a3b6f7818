"""One database's dump, whichever place it goes to: what `dumping` (a backup directory) and `repo_backup`
(a repository) share around their own way of storing pg_dump's output.

A `DumpTask` is what every store is handed: the database, the server and its DSN, the client tools,
pg_dump's jobs and the run's stop event (the same facts for a custom or a directory dump, into a backup
directory or a repository; only where the store puts the output differs). `dump_one` runs the store's
function with a `DumpJob`, turns its failure into the result's one-line error (a failing database never
stops the others), and logs the failure; the job times the dump and builds its manifest from the facts
the store reports (name, stamp, size, digest, the snapshot's counts).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pgtool.errors import OperationError, PgtoolError, error_line
from pgtool.logical.dump_manifest import build_manifest
from pgtool.obs.logging import get_logger
from pgtool.pg import binaries

# What `dumping.dump_in_snapshot` returns: (table counts, database size, encoding, properties).
Snapshot = tuple[list[dict[str, Any]], int, str, dict[str, Any]]


@dataclass
class DumpResult:
    """The outcome for one database: `path` set on success, `error` on failure."""

    database: str
    path: Path | None = None
    location: str | None = None  # where a repository dump went ("dumps/... in s3://...")
    size_bytes: int = 0
    duration_seconds: float = 0.0
    tables: int = 0
    rows: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class ServerInfo:
    version: str
    version_num: int
    major: int


@dataclass(frozen=True)
class DumpTask:
    """One database to dump: what every store (`dumping`, `dump_directory`, `repo_backup`,
    `repo_directory`) takes besides where the dump goes."""

    dsn: str
    database: str
    server: ServerInfo
    pg: binaries.PgBinaries
    stop: threading.Event  # set on SIGTERM: a dump not started yet is not started
    jobs_per_dump: int = 1  # pg_dump -j, directory format only


@dataclass
class DumpJob:
    """One database's dump under way: its result, its clock, and the manifest built from what the store
    reports."""

    task: DumpTask
    result: DumpResult
    start: float = field(default_factory=time.monotonic)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    duration: float = 0.0

    def manifest(
        self,
        dump_file: str,
        stamp: str,
        size: int,
        digest: str,
        snapshot: Snapshot,
        files: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """The dump's manifest; the dump's duration ends here (what remains is storing the manifest).

        `files`: a directory dump's {file name: SHA-256} (`dump_directory.hash_files`); `digest` is then
        their `tree_digest`."""
        counts, db_size, encoding, properties = snapshot
        self.duration = round(time.monotonic() - self.start, 3)
        task = self.task
        manifest = build_manifest(
            task.database,
            dump_file,
            stamp,
            self.started_at,
            self.duration,
            server_version=task.server.version,
            server_version_num=task.server.version_num,
            pg_dump_version=task.pg.version,
            size=size,
            db_size=db_size,
            encoding=encoding,
            digest=digest,
            counts=counts,
            properties=properties,
        )
        if files is not None:
            manifest.update(dump_format="directory", files=files)
        return manifest

    def stored(self, size: int, counts: list[dict[str, Any]]) -> None:
        """The dump and its manifest are in place: the result says what was dumped."""
        self.result.size_bytes, self.result.duration_seconds = size, self.duration
        self.result.tables, self.result.rows = len(counts), sum(t["rows"] for t in counts)


def dump_one(task: DumpTask, store: Callable[[DumpJob], None]) -> DumpResult:
    """`store(job)` for one database; never raises a PgtoolError (it goes into the result)."""
    result = DumpResult(task.database)
    if task.stop.is_set():
        result.error = "not started: the run is being terminated"
        return result
    job = DumpJob(task, result)
    try:
        require_utf8_name(task.database)
        store(job)
    except (PgtoolError, OSError) as exc:
        result.error = error_line(exc)
    if result.error:
        result.duration_seconds = round(time.monotonic() - job.start, 3)
        get_logger().bind(database=task.database).error("dump failed", error=result.error)
    return result


def require_utf8_name(database: str) -> None:
    """psycopg takes connection strings as str and encodes them as UTF-8: a database name holding other
    bytes (possible in a SQL_ASCII cluster) cannot be reached; say so rather than crash the run."""
    try:
        database.encode("utf-8")
    except UnicodeEncodeError:
        raise OperationError(
            "the database name is not valid UTF-8; pgtool cannot connect to it",
            hint="rename it (ALTER DATABASE ... RENAME TO) or dump it with pg_dump directly",
        ) from None
