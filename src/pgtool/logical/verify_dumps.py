"""`pgtool verify`: prove the newest dump of each database restores, with the rows it should hold.

Per database, on the newest file named like a dump (`pgtool.logical.dumps`), stopping at the first
failure (the checks themselves are in `pgtool.logical.verify_checks`):
  1. manifest present, well formed and of this database;
  2. SHA-256 of the file equals its `.sha256` (and the manifest's): computed while steps 3-4 run, and
     reported in preference to their errors, since damage explains them;
  3. `pg_restore --list` reads the table of contents, which has entries and names the same database;
  4. restore (`pg_restore -j N --exit-on-error`) into a throwaway database `pgtool_verify_<token>_<db>`,
     in the dump's encoding, on the drill's server (`pgtool.logical.drill_server`): its own cluster,
     where the globals were restored first and owners and grants restore as in the dump, or a scratch
     server (`--target-dsn`), where they are left out (`--no-owner --no-acl`);
  5. every table's exact row count equals the manifest's, and no table is missing or extra (each
     table is counted as soon as pg_restore reports its data committed, see `dump_restore`);
  6. with amcheck, `bt_index_check(..., heapallindexed => true)` on every restored leaf btree index;
  7. in the own cluster, the database's owner, ACL, settings and comment recorded at backup are
     applied and read back (`pgtool.logical.db_properties`), the owner also against the dump's TOC.
A dump that passes gets a `.verified.json` record beside it, which retention honours; one that fails
loses any record it had. The throwaway database is dropped whatever happens (SIGTERM included, see
`pgtool.pg.terminate`); `verify_throwaway` says how runs keep out of each other's way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict, Unpack

import psycopg

from pgtool.errors import OperationError, PgtoolError, UsageError, error_line
from pgtool.logical import db_properties, drill_server, dumps, verify_throwaway
from pgtool.logical.dump_manifest import write_verified
from pgtool.logical.dump_restore import DumpReadError, RestoreError, Toc, restore
from pgtool.logical.dump_sessions import session
from pgtool.logical.row_counts import TableCounter, qualified
from pgtool.logical.verify_checks import VerifyFailure, amcheck, check_manifest, check_toc, compare_counts
from pgtool.obs.logging import get_logger
from pgtool.obs.metrics import RunReport
from pgtool.pg import binaries
from pgtool.pg.terminate import sigterm_raises

# pg_restore workers per database, each with a connection and a counting session beside it.
MAX_JOBS = 64


@dataclass
class VerifyResult:
    database: str
    dump: Path | None = None
    error: str | None = None
    location: str | None = None  # a repository dump: its object and store
    manifest: dict[str, Any] | None = None  # a repository dump's manifest (for the evidence record)
    tables: int = 0
    rows: int = 0
    restore_seconds: float | None = None
    indexes_checked: int = 0
    properties_checked: bool = False  # owner, ACL, settings and comment as recorded (own cluster)

    @property
    def ok(self) -> bool:
        return self.error is None


def databases_in(backup_dir: Path) -> list[str]:
    """Every database with at least one dump-named file under `backup_dir`, sorted."""
    return sorted(
        dumps.decode_name(p.name) for p in backup_dir.iterdir() if p.is_dir() and dumps.dump_files(p)
    )


@dataclass
class Run:
    """What every database's drill shares: the maintenance session, the server, the run's token."""

    conn: psycopg.Connection[Any]
    dsn: str
    backup_dir: Path
    pg: binaries.PgBinaries
    token: str
    jobs: int
    amcheck: bool
    pg_bindir: str | None
    keep_owners: bool = False  # owners and grants restored as in the dump (globals restored first)


def verify_database(run: Run, database: str) -> VerifyResult:
    """Verify the newest dump of `database`; failures go into the result (Terminated propagates)."""

    def check(result: VerifyResult) -> None:
        log = get_logger().bind(database=database)
        db_dir = dumps.database_dir(run.backup_dir, database)
        for future in dumps.future_dump_files(db_dir):
            log.warning("dump stamped in the future ignored", file=str(future), hint="check the clock")
        files = dumps.dump_files(db_dir)
        if not files:
            raise VerifyFailure(f"no dump found in {db_dir}")
        _stamp, dump = files[-1]
        result.dump = dump
        try:
            digest = drill(run, database, dump, result)
        except (PgtoolError, OSError):
            with contextlib.suppress(OSError):
                dumps.verified_path(dump).unlink()  # a dump that once verified does not any more
            raise
        write_verified(dumps.verified_path(dump), {"dump_file": dump.name, **verdict(run, result, digest)})

    return verify_with(database, check, lambda result: {"file": str(result.dump or "")})


def verify_with(
    database: str, check: Callable[[VerifyResult], None], place: Callable[[VerifyResult], dict[str, str]]
) -> VerifyResult:
    """What both forms share around `check(result)` (find, drill and mark the newest dump, raising on
    failure): the result, the failure caught into it, the log lines naming the dump by `place`."""
    log = get_logger().bind(database=database)
    result = VerifyResult(database)
    try:
        check(result)
        log.info(
            "dump verified",
            **place(result),
            tables=result.tables,
            rows=result.rows,
            restore_s=result.restore_seconds,
            indexes_checked=result.indexes_checked,
        )
    except (PgtoolError, OSError) as exc:
        result.error = error_line(exc)
    if result.error:
        log.error("dump verification failed", **place(result), error=result.error)
    return result


def verdict(run: Run, result: VerifyResult, digest: str) -> dict[str, Any]:
    """The verified record's fields both forms share (each puts the dump's name before them)."""
    return {
        "sha256": digest,
        "verified_at": datetime.now(UTC).isoformat(),
        "tables": result.tables,
        "rows": result.rows,
        "indexes_checked": result.indexes_checked if run.amcheck else None,
    }


def drill(run: Run, database: str, dump: Path, result: VerifyResult) -> str:
    """Steps 1-6 for one dump, into `result`; the dump's verified SHA-256. Raises on any failure."""
    log = get_logger().bind(database=database)
    manifest, pg, checksum = check_manifest(database, dump, run.pg, run.pg_bindir)
    scratch = verify_throwaway.throwaway_name(database, run.token)
    counter = TableCounter(
        lambda: session(run.dsn, dbname=scratch, application_name="pgtool-verify"), run.jobs
    )
    try:
        try:
            # The TOC is read by a pg_restore process while the server creates the database.
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="toc") as reading:
                toc_job = reading.submit(check_toc, database, dump, pg)
                verify_throwaway.create(run.conn, scratch, manifest.get("database_encoding"), run.pg.major)
                toc: Toc = toc_job.result()
            # Each table is counted as soon as its data is in, while pg_restore builds indexes.
            ids = toc.table_ids((t["schema"], t["name"]) for t in manifest["tables"])

            def loaded(dump_id: int) -> None:
                if dump_id in ids:
                    log.debug("table data restored, counting its rows", table=qualified(*ids[dump_id]))
                    counter.submit(ids[dump_id])

            result.restore_seconds = restore(
                run.dsn, dump, scratch, pg, run.jobs, on_data_loaded=loaded, keep_owners=run.keep_owners
            )
        except (VerifyFailure, DumpReadError, RestoreError, OperationError):
            checksum.check()
            raise
        digest = checksum.check()
        restored = counter.finish()
        problems = compare_counts(manifest["tables"], restored)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise VerifyFailure(problems[0] + more)
        result.tables, result.rows = len(restored), sum(t["rows"] for t in restored)
        if run.amcheck:
            result.indexes_checked = amcheck(run.dsn, scratch)
        if run.keep_owners:
            result.properties_checked = _check_properties(run, database, scratch, manifest, toc)
    finally:
        counter.abandon()
        _drop_throwaway(run, scratch, result)
    return digest


def _check_properties(run: Run, database: str, scratch: str, manifest: dict[str, Any], toc: Toc) -> bool:
    """Step 7, after the restore and counts (a setting such as default_transaction_read_only would
    stop them); False when the manifest predates the record (nothing to compare)."""
    recorded = manifest.get("database_properties")
    if recorded is None:
        return False
    if not db_properties.valid(recorded):
        raise VerifyFailure("manifest: database_properties is malformed")
    differs = db_properties.toc_owner(toc.database_owner(database), recorded)
    if differs is not None:
        raise VerifyFailure(differs)
    problems: list[str] = []
    with session(run.dsn, application_name="pgtool-verify") as conn:
        try:
            db_properties.apply(conn, scratch, recorded)
        except db_properties.PropertiesError as exc:
            raise VerifyFailure(str(exc)) from None
        problems += db_properties.check(conn, scratch, recorded)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise VerifyFailure(problems[0] + more)
    return True


def _drop_throwaway(run: Run, scratch: str, result: VerifyResult) -> None:
    try:
        verify_throwaway.drop(run.dsn, scratch, run.conn)
    except PgtoolError as exc:
        message = exc.one_line()
        get_logger().error("could not drop throwaway database", database=scratch, error=message)
        result.error = result.error or f"could not drop throwaway database {scratch}: {message}"


class VerifyOptions(TypedDict):
    """What a verify run takes besides its server and where the dumps are (both forms, and evidence)."""

    databases: list[str]
    amcheck: bool
    jobs: int
    pg_bindir: str | None
    report: RunReport


def run_verify(dsn: str, backup_dir: Path, **options: Unpack[VerifyOptions]) -> list[VerifyResult]:
    """Verify the newest dump of each database (all under `backup_dir`, or those named).

    Raises ConnectError (server unreachable), LockBusyError (another verify runs on this server),
    UsageError, OperationError (nothing to verify); per-database failures are in the results.
    """
    check_jobs(options["jobs"])
    backup_dir = Path(backup_dir)
    if not backup_dir.is_dir():
        raise OperationError(f"backup directory {backup_dir} does not exist")
    targets = list(dict.fromkeys(options["databases"])) or databases_in(backup_dir)
    if not targets:
        raise OperationError(f"no dumps found in {backup_dir}", hint="run pgtool backup --dest first")
    return drill_each(dsn, backup_dir, targets, verify_database, options)


def check_jobs(jobs: int) -> None:
    if not 1 <= jobs <= MAX_JOBS:
        raise UsageError(f"--jobs must be between 1 and {MAX_JOBS}")


def drill_each(
    dsn: str,
    backup_dir: Path,
    targets: list[str],
    verify_one: Callable[[Run, str], VerifyResult],
    options: VerifyOptions,
) -> list[VerifyResult]:
    """`verify_one(run, database)` for each target, on one maintenance session and run token.

    `dsn` names the drill's server (`drill_server.describe`): in its own cluster the globals are
    restored first; if they do not restore, GlobalsError and no database is drilled.
    """
    results: list[VerifyResult] = []
    server = drill_server.describe(dsn)
    token = verify_throwaway.new_token()
    jobs, amcheck, pg_bindir = options["jobs"], options["amcheck"], options["pg_bindir"]
    # The maintenance session creates and drops the throwaway databases; ending it releases the locks.
    with session(dsn, application_name="pgtool-verify") as conn:
        verify_throwaway.lock_run(conn, token)
        major = conn.info.server_version // 10000
        pg = binaries.for_server(major, pg_bindir)
        pg.path("pg_restore")
        with sigterm_raises():
            keep_owners = server.prepare()
            run = Run(conn, dsn, backup_dir, pg, token, jobs, amcheck, pg_bindir, keep_owners)
            verify_throwaway.drop_stale(conn, dsn)
            try:
                for database in targets:
                    results.append(verify_one(run, database))
            finally:
                _record_metrics(options["report"], results)
    return results


def _record_metrics(report: RunReport, results: list[VerifyResult]) -> None:
    for r in results:
        samples: list[tuple[str, str, float]] = [
            (
                "pgtool_verify_database_success",
                "1 if the newest dump of this database restored and checked out",
                1 if r.ok else 0,
            )
        ]
        if r.restore_seconds is not None:
            samples.append(
                (
                    "pgtool_verify_database_restore_duration_seconds",
                    "How long the restore of this database's newest dump took",
                    r.restore_seconds,
                )
            )
        report.gauges(samples, database=r.database)
