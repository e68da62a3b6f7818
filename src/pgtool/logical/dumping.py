"""`pgtool backup`: pg_dump every database (custom format, or directory: `dump_directory`) with a
checksum, a manifest and retention.

Per database: a session (`pgtool.logical.dump_sessions`) opens a REPEATABLE READ transaction and
exports its snapshot, pg_dump starts on that snapshot (`--snapshot`) and, while it runs, the session
counts every table's rows in the same snapshot, so the manifest's counts are exactly the rows in the
dump and the counting costs no wall-clock time when a core is free. The exporting transaction stays
open until pg_dump has finished (pg_dump imports the snapshot at start; keeping it open longer costs
nothing and keeps the code simple). pg_dump writes a hidden `.partial` file; only when it exits 0 is
the file fsynced, its checksum and manifest written, and it is renamed to its final name, then the
directory is fsynced. Databases run in parallel (threads, each waiting on its own pg_dump) up to
`jobs`; one failing database does not stop the others.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NotRequired, Protocol, TypedDict, Unpack

import psycopg

from pgtool.durable_write import fsync_path
from pgtool.errors import OperationError, UsageError
from pgtool.logical import db_properties, dump_directory, dumps, globals_dump
from pgtool.logical.dump_job import DumpJob, DumpResult, DumpTask, ServerInfo, Snapshot, dump_one
from pgtool.logical.dump_manifest import checksum_line, sha256_file
from pgtool.logical.dump_metrics import Newest, record_metrics
from pgtool.logical.dump_retention import apply_retention
from pgtool.logical.dump_sessions import cancel_all, one_row, session
from pgtool.logical.dump_target import new_dump, publish
from pgtool.logical.locking import directory_lock
from pgtool.obs.logging import get_logger
from pgtool.obs.metrics import RunReport
from pgtool.pg import binaries, command
from pgtool.pg.terminate import sigterm_raises

# One row per database the role may dump (or one with a NULL name if none), each with the version.
SERVER_INFO_SQL = """
SELECT pg_catalog.current_setting('server_version'), pg_catalog.current_setting('server_version_num'),
  d.datname
FROM (SELECT 1) AS one
LEFT JOIN pg_catalog.pg_database AS d
  ON NOT d.datistemplate AND d.datallowconn AND pg_catalog.has_database_privilege(d.oid, 'CONNECT')
ORDER BY d.datname
"""
MAX_RETENTION_DAYS = 36_500  # a century
DATABASE_SQL = """
SELECT pg_catalog.pg_database_size(d.oid), pg_catalog.pg_encoding_to_char(d.encoding)
FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()
"""


@dataclass
class BackupResult:
    results: list[DumpResult]
    removed: list[Path | str] = field(default_factory=list)  # dump files, or repository objects
    globals_location: str | None = None  # where pg_dumpall --globals-only went
    globals_error: str | None = None

    @property
    def failed(self) -> list[DumpResult]:
        return [r for r in self.results if not r.ok]


def select_databases(available: list[str], wanted: list[str], exclude: list[str]) -> list[str]:
    """The databases to dump: `wanted` (in the order given) or every available one, minus `exclude`."""
    chosen = list(dict.fromkeys(wanted)) if wanted else list(available)
    return [d for d in chosen if d not in set(exclude)]


def dump_database(task: DumpTask, dest: Path) -> DumpResult:
    """Dump one database into `dest/<database>/`; never raises a PgtoolError (it goes into the result)."""

    def store(job: DumpJob) -> None:
        with new_dump(dest, task.database, dumps.DUMP_SUFFIX) as (stamp, final, partial):
            snapshot = dump_in_snapshot(task, partial)
            # pg_dump runs with --no-sync: the flush to disk (I/O) overlaps the hash (CPU) instead.
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fsync") as syncing:
                synced = syncing.submit(fsync_path, partial)
                digest = sha256_file(partial)
                synced.result()
            size = partial.stat().st_size
            manifest = job.manifest(final.name, stamp, size, digest, snapshot)
            publish(partial, final, checksum_line(digest, final.name), manifest)
        job.result.path = final
        job.stored(size, snapshot[0])
        get_logger().bind(database=task.database).info(
            "dump written", file=str(final), size_bytes=size, duration_s=job.duration, tables=len(snapshot[0])
        )

    return dump_one(task, store)


def dump_in_snapshot(
    task: DumpTask, partial: Path | None, *, stdout: int | None = None, args: list[str] | None = None
) -> Snapshot:
    """Run pg_dump on an exported snapshot and count rows in it meanwhile; (counts, size, encoding,
    the database's own properties: `pgtool.logical.db_properties`).

    One session exports the snapshot and, once pg_dump runs, counts in that same transaction.
    pg_dump writes to `partial`, or without one to its stdout, the file descriptor `stdout` (the
    caller's pipe into a repository upload, `pgtool.logical.repo_backup`). `args`: the format
    options (`dump_directory.pg_dump_args`; default custom format).
    """
    from pgtool.logical.row_counts import count_rows, list_tables

    dsn, database, pg = task.dsn, task.database, task.pg
    with session(dsn, dbname=database, application_name="pgtool-backup") as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        (snapshot,) = one_row(conn, "SELECT pg_catalog.pg_export_snapshot()")
        dump_error: list[BaseException] = []
        with command.libpq_args(dsn, dbname=database, application_name="pgtool-backup-pg_dump") as (
            target,
            env,
        ):
            argv = [
                pg.path("pg_dump"),
                *(args or ["--format=custom"]),
                *([f"--file={partial}"] if partial is not None else []),
                f"--snapshot={snapshot}",
                "--no-sync",  # pgtool fsyncs the file itself, beside hashing it
                "--no-password",
                f"--dbname={target}",
            ]

            dump_failed = threading.Event()

            def run_pg_dump() -> None:
                try:
                    command.run(
                        argv,
                        env=env,
                        what=f"pg_dump of {database}",
                        stdout=command.DEVNULL if stdout is None else stdout,
                    )
                except BaseException as exc:  # handed to the waiting thread
                    dump_error.append(exc)
                    dump_failed.set()
                    # A failed pg_dump stops the count in flight: it would only delay its error.
                    with contextlib.suppress(Exception):
                        conn.cancel_safe(timeout=5)

            worker = threading.Thread(target=run_pg_dump, name=f"pg_dump-{database}", daemon=True)
            worker.start()
            try:
                # The counts run beside pg_dump, whose single process compressing the dump is the
                # critical path: without parallel workers they take only the spare core, not pg_dump's.
                conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
                db_size, encoding = one_row(conn, DATABASE_SQL)
                properties = db_properties.read(conn)
                counts = count_rows(conn, list_tables(conn), stop=_Either(task.stop, dump_failed))
            except (OperationError, psycopg.Error):
                if not dump_failed.is_set():
                    # The count's own error. It ended the exporting transaction, so pg_dump may
                    # fail next ("invalid snapshot identifier"): this one is the cause.
                    raise
                raise dump_error[0] from None
            finally:
                worker.join()
    if dump_error:
        raise dump_error[0]
    return counts, int(db_size), str(encoding), properties


class _Either:
    """Set when either event is: what `count_rows` polls between tables."""

    def __init__(self, *events: threading.Event) -> None:
        self._events = events

    def is_set(self) -> bool:
        return any(e.is_set() for e in self._events)


def server_info(dsn: str) -> tuple[ServerInfo, list[str]]:
    """The server's version and the databases the role may dump."""
    with session(dsn, application_name="pgtool-backup") as conn:
        rows = conn.execute(SERVER_INFO_SQL).fetchall()
    version, version_num = rows[0][0], int(rows[0][1])
    info = ServerInfo(version.split()[0], version_num, version_num // 10000)
    return info, [r[2] for r in rows if r[2]]


class BackupOptions(TypedDict):
    """What a backup run takes besides its server and its destination (either form)."""

    databases: list[str]
    exclude: list[str]
    retention_days: int
    jobs: int
    wait: bool
    pg_bindir: str | None
    report: RunReport
    with_role_passwords: NotRequired[bool]
    dump_format: NotRequired[str]  # "custom" (default) or "directory" (`pgtool.logical.dump_directory`)
    jobs_per_dump: NotRequired[int]  # pg_dump -j, directory format only


class Destination(Protocol):
    """Where a backup run writes: a backup directory (below) or a repository (`repo_backup`)."""

    about: dict[str, str]  # what the "backup starting" line says of it

    def lock(self, wait: bool) -> AbstractContextManager[object]: ...

    def dump(self, task: DumpTask) -> DumpResult: ...

    def warn_leftovers(self, databases: list[str]) -> None: ...

    def store_globals(self, dsn: str, pg: binaries.PgBinaries, with_passwords: bool) -> str: ...

    def retention(self, databases: list[str], days: int) -> list[Path | str]: ...

    def newest(self, database: str) -> Newest | None: ...


def backup_into(
    dsn: str, server: ServerInfo, available: list[str], dest: Destination, options: BackupOptions
) -> BackupResult:
    """Dump the chosen databases and the globals into `dest`, apply retention, record metrics."""
    with dest.lock(options["wait"]):
        targets = select_databases(available, options["databases"], options["exclude"])
        if not targets:
            raise UsageError(
                "no database to back up",
                hint="the role can connect to none, or --database/--exclude left none",
            )
        pg = binaries.for_server(server.major, options["pg_bindir"])
        pg.path("pg_dump")  # fail once, clearly, rather than once per database
        jobs = options["jobs"]
        get_logger().info(
            "backup starting", databases=len(targets), jobs=jobs, pg_dump=pg.version, **dest.about
        )
        per_dump = options.get("jobs_per_dump", 1)
        results = dump_all(
            targets, jobs, lambda db, stop: dest.dump(DumpTask(dsn, db, server, pg, stop, per_dump))
        )
        dest.warn_leftovers(targets)
        with_passwords = options.get("with_role_passwords", False)
        stored = globals_dump.store(lambda: dest.store_globals(dsn, pg, with_passwords))
        removed: list[Path | str] = []
        if options["retention_days"] > 0:
            removed = dest.retention(targets, options["retention_days"])
        record_metrics(options["report"], results, dest.newest)
    return BackupResult(results, removed, *stored)


def run_backup(dsn: str, dest: Path, **options: Unpack[BackupOptions]) -> BackupResult:
    """Dump the chosen databases and the globals into `dest`, apply retention, record metrics.

    Raises ConnectError (server unreachable), LockBusyError (another run holds `dest`), UsageError;
    per-database failures are in the result (the caller turns them into exit 1).
    """
    check_options(options["jobs"], options["retention_days"])
    fmt, per_dump = options.get("dump_format", "custom"), options.get("jobs_per_dump", 1)
    dump_directory.check_format(fmt, per_dump)
    dest = Path(dest)
    # Connect first: an unreachable server must not leave an empty backup directory behind.
    server, available = server_info(dsn)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OperationError(f"cannot create backup directory {dest}: {exc.strerror or exc}") from None
    return backup_into(dsn, server, available, _Directory(dest, fmt), options)


class _Directory:
    """A backup directory: one folder per database, the globals beside them (`Destination`)."""

    def __init__(self, dest: Path, dump_format: str = "custom") -> None:
        self.dest, self.format = dest, dump_format
        self.about: dict[str, str] = {"format": dump_format}

    def lock(self, wait: bool) -> AbstractContextManager[object]:
        return directory_lock(self.dest, dumps.LOCK_FILE, wait=wait, what="pgtool backup")

    def dump(self, task: DumpTask) -> DumpResult:
        if self.format == "directory":
            return dump_directory.dump_database(task, self.dest)
        return dump_database(task, self.dest)

    def warn_leftovers(self, databases: list[str]) -> None:
        """Log partial dumps a killed run left (we hold the lock, so nobody is writing them). Retention
        never deletes incomplete files, so an operator decides; they only cost disk space."""
        for db in databases:
            for path in dumps.database_dir(self.dest, db).glob(f".*{dumps.PARTIAL_SUFFIX}"):
                get_logger().warning(
                    "partial dump left by an interrupted run",
                    file=str(path),
                    hint="delete it when convenient",
                )

    def store_globals(self, dsn: str, pg: binaries.PgBinaries, with_passwords: bool) -> str:
        return str(globals_dump.store_in_dir(self.dest, dsn, pg, with_passwords=with_passwords))

    def retention(self, databases: list[str], days: int) -> list[Path | str]:
        removed: list[Path | str] = []
        for db in databases:
            removed += apply_retention(dumps.database_dir(self.dest, db), days)
        removed += globals_dump.retention_in_dir(self.dest, days)
        return removed

    def newest(self, database: str) -> Newest | None:
        return _newest(self.dest, database)


def _newest(dest: Path, database: str) -> Newest | None:
    found = dumps.list_database_dumps(dumps.database_dir(dest, database))
    if not found:
        return None
    last = found[-1]
    return Newest(last.finished_at, last.size_bytes, float(last.manifest.get("duration_seconds") or 0.0))


def check_options(jobs: int, retention_days: int) -> None:
    if jobs < 1:
        raise UsageError("--jobs must be at least 1")
    if not 0 <= retention_days <= MAX_RETENTION_DAYS:
        # Checked before any work: a date that far back would only overflow after the dumps were taken.
        raise UsageError(f"--retention-days must be between 0 (keep everything) and {MAX_RETENTION_DAYS}")


def dump_all(
    targets: list[str], jobs: int, dump_one: Callable[[str, threading.Event], DumpResult]
) -> list[DumpResult]:
    """`dump_one(database, stop)` for each target, `jobs` at a time; SIGTERM stops them all."""
    with sigterm_raises() as stop:
        executor = ThreadPoolExecutor(max_workers=min(jobs, len(targets)), thread_name_prefix="dump")
        try:
            futures: list[Future[DumpResult]] = [executor.submit(dump_one, db, stop) for db in targets]
            return [f.result() for f in futures]
        except BaseException:
            cancel_all()  # SIGTERM: counts in flight stop now, not when they are done
            raise
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
