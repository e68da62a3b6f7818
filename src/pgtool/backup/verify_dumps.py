"""`pgtool verify`: prove the newest dump of each database restores, with the rows it should hold.

Per database, on the newest file named like a dump (`pgtool.backup.dumps`), stopping at the first
failure:
  1. manifest present and of this database;
  2. SHA-256 of the file equals its `.sha256` (and the manifest's): computed while steps 3-4 run, and
     reported in preference to their errors, since damage explains them;
  3. `pg_restore --list` reads the table of contents, which has entries and names the same database;
  4. restore (`pg_restore -j N --exit-on-error --no-owner --no-acl`) into a throwaway database
     `pgtool_verify_<db>_<stamp>` on the `--dsn` server;
  5. every table's exact row count equals the manifest's, and no table is missing or extra (each
     table is counted as soon as pg_restore reports its data committed, see `dump_restore`);
  6. with amcheck, `bt_index_check(..., heapallindexed => true)` on every restored btree index.
The throwaway database is dropped whatever happens (SIGTERM included, see `pgtool.backup.terminate`).

One verify run per server at a time: a session advisory lock on the maintenance connection. That
lock is what makes it safe to drop every `pgtool_verify_*` database found at start: they were left by
a run that was killed (SIGKILL, OOM, node loss) before it could clean up.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgtool.backup import dumps
from pgtool.backup.dump_manifest import read_checksum, read_manifest, sha256_file
from pgtool.backup.dump_restore import DumpReadError, RestoreError, Toc, read_toc, restore
from pgtool.backup.row_counts import TableCounter, qualified
from pgtool.backup.terminate import sigterm_raises
from pgtool.errors import LockBusyError, OperationError, PgtoolError, error_line
from pgtool.obs.logging import get_logger
from pgtool.obs.metrics import RunReport
from pgtool.pg import binaries, psql

THROWAWAY_PREFIX = "pgtool_verify_"
# "pgtool" in ASCII: the key of the session advisory lock that keeps verify runs from overlapping.
ADVISORY_LOCK_KEY = 0x7067746F6F6C
LOCK_SQL = f"SELECT pg_try_advisory_lock({ADVISORY_LOCK_KEY}), current_setting('server_version_num');"
_MAX_IDENTIFIER_BYTES = 63

BTREE_INDEXES_SQL = """
SELECT c.oid, n.nspname, c.relname
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_am am ON am.oid = c.relam
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE am.amname = 'btree' AND i.indisvalid AND i.indisready AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
ORDER BY 2, 3
"""


class VerifyFailure(OperationError):
    """One database's dump did not verify; the message says what (checksum, TOC, restore, rows)."""


@dataclass
class VerifyResult:
    database: str
    dump: Path | None = None
    error: str | None = None
    tables: int = 0
    rows: int = 0
    restore_seconds: float | None = None
    indexes_checked: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None


def throwaway_name(database: str, stamp: str) -> str:
    """`pgtool_verify_<db>_<stamp>`, shortened (with a hash for uniqueness) to fit 63 bytes."""
    import hashlib

    name = f"{THROWAWAY_PREFIX}{database}_{stamp}"
    if len(name.encode()) <= _MAX_IDENTIFIER_BYTES:
        return name
    digest = hashlib.sha256(database.encode()).hexdigest()[:8]
    room = _MAX_IDENTIFIER_BYTES - len(f"{THROWAWAY_PREFIX}_{digest}_{stamp}".encode())
    short = database.encode()[:room].decode("utf-8", "ignore")
    return f"{THROWAWAY_PREFIX}{short}_{digest}_{stamp}"


def databases_in(backup_dir: Path) -> list[str]:
    """Every database with at least one dump-named file under `backup_dir`, sorted."""
    return sorted(
        dumps.decode_name(p.name) for p in backup_dir.iterdir() if p.is_dir() and dumps.dump_files(p)
    )


def drop_database(pg: binaries.PgBinaries, dsn: str, name: str, session: psql.Session | None = None) -> None:
    """DROP DATABASE IF EXISTS ... WITH (FORCE), in `session` if it is usable, else in a fresh one.

    The run's session saves a connection set-up per database; after a SIGTERM or a server-side
    error it may be gone or mid-statement, and the drop must still happen.
    """
    drop = f"DROP DATABASE IF EXISTS {psql.identifier(name)} WITH (FORCE);"
    if session is not None and session.usable:
        try:
            session.rows(drop)
            return
        except PgtoolError as exc:
            get_logger().debug("drop in the run's session failed, retrying in a fresh one", error=str(exc))
    psql.query(pg, dsn, drop, application_name="pgtool-verify")


# Every throwaway name: the prefix with its underscores escaped for LIKE.
_STALE_SQL = "SELECT datname FROM pg_database WHERE datname LIKE '{}%' ORDER BY 1;".format(
    THROWAWAY_PREFIX.replace("_", "\\_")
)


def drop_stale(session: psql.Session, pg: binaries.PgBinaries, dsn: str) -> list[str]:
    """Drop throwaway databases a killed run left behind (call with the advisory lock held)."""
    stale = [r[0] for r in session.rows(_STALE_SQL)]
    for name in stale:
        get_logger().warning("dropping throwaway database left by an earlier run", database=name)
        drop_database(pg, dsn, name, session)
    return stale


def _tools_for_dump(
    pg: binaries.PgBinaries, manifest: dict[str, Any], pg_bindir: str | None
) -> binaries.PgBinaries:
    """pg_restore must be at least as new as the pg_dump that wrote the archive."""
    try:
        dump_major = int(str(manifest.get("pg_dump_version", "0")).split(".")[0])
    except ValueError:
        return pg
    return pg if dump_major <= pg.major else binaries.for_server(dump_major, pg_bindir)


class _Checksum:
    """The dump's SHA-256, computed in a thread while the TOC is read and the dump restored.

    Hashing is I/O plus one core; overlapping it with pg_restore keeps it off the drill's wall clock.
    `check()` waits for it and raises the mismatch. Call it before reporting a TOC or restore error
    too: damage to the file is the better explanation of those.
    """

    def __init__(self, dump: Path, expected: str, manifest_sha: str | None) -> None:
        self.dump, self.expected, self.manifest_sha = dump, expected, manifest_sha
        self.job = _Background(sha256_file, dump)

    def check(self) -> None:
        try:
            actual = self.job.result()
        except OSError as exc:
            raise VerifyFailure(f"cannot read {self.dump}: {exc.strerror or exc}") from None
        expected = self.expected
        if actual != expected:
            raise VerifyFailure(
                f"checksum mismatch: the file hashes to {actual[:12]}..., its .sha256 says {expected[:12]}..."
            )
        if self.manifest_sha not in (None, actual):
            raise VerifyFailure("checksum mismatch: the manifest's sha256 differs from the file's")


class _Background:
    """`fn(*args)` in a daemon thread; `result()` waits for it and re-raises what it raised."""

    def __init__(self, fn: Any, *args: Any) -> None:
        self._value: Any = None
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self._value = fn(*args)
            except BaseException as exc:
                self._error = exc

        self._thread = threading.Thread(target=run, name=getattr(fn, "__name__", "background"), daemon=True)
        self._thread.start()

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


def _check_manifest(
    database: str, dump: Path, pg: binaries.PgBinaries, pg_bindir: str | None
) -> tuple[dict[str, Any], binaries.PgBinaries, _Checksum]:
    """Step 1, and step 2 started: (manifest, client tools to restore with, the running checksum)."""
    try:
        manifest = read_manifest(dumps.manifest_path(dump))
    except OperationError as exc:
        raise VerifyFailure(exc.message) from None
    if manifest.get("database") != database:
        raise VerifyFailure(f"wrong database: the manifest says the dump is of {manifest.get('database')!r}")
    pg = _tools_for_dump(pg, manifest, pg_bindir)
    expected = read_checksum(dumps.checksum_path(dump))
    if expected is None:
        raise VerifyFailure(f"checksum file missing or malformed ({dumps.checksum_path(dump).name})")
    return manifest, pg, _Checksum(dump, expected, manifest.get("sha256"))


def _check_toc(database: str, dump: Path, pg: binaries.PgBinaries) -> Toc:
    """Step 3: the TOC reads, has entries, and names this database."""
    toc = read_toc(pg, dump)
    if toc.entries == 0:
        raise VerifyFailure("TOC has no entries")
    if toc.dbname is not None and toc.dbname != database:
        raise VerifyFailure(f"wrong database: the dump's TOC says it is of {toc.dbname!r}")
    return toc


def _compare_counts(expected: list[dict[str, Any]], restored: list[dict[str, Any]]) -> list[str]:
    want = {(t["schema"], t["name"]): int(t["rows"]) for t in expected}
    have = {(t["schema"], t["name"]): int(t["rows"]) for t in restored}
    problems = []
    for key, rows in want.items():
        if key not in have:
            problems.append(f"table {qualified(*key)} missing after restore")
        elif have[key] != rows:
            problems.append(f"row count {qualified(*key)}: {have[key]} restored vs {rows} in the manifest")
    problems += [
        f"table {qualified(*key)} restored but not in the manifest" for key in have if key not in want
    ]
    return problems


def _amcheck(dsn: str, scratch: str) -> int:
    """Step 6 on a psycopg connection (the driver is loaded only for it): indexes checked."""
    import psycopg

    from pgtool.pg.conn import connect

    with connect(dsn, dbname=scratch, application_name="pgtool-verify") as conn:
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
        except psycopg.Error as exc:
            raise VerifyFailure(f"amcheck unavailable: {error_line(exc)}") from None
        try:
            indexes = conn.execute(BTREE_INDEXES_SQL).fetchall()
        except psycopg.Error as exc:
            raise VerifyFailure(f"amcheck: listing indexes: {error_line(exc)}") from None
        for oid, schema, name in indexes:
            try:
                conn.execute(
                    "SELECT bt_index_check(index => %s::oid::regclass, heapallindexed => true)", [oid]
                )
            except psycopg.Error as exc:
                raise VerifyFailure(f"amcheck: index {qualified(schema, name)}: {error_line(exc)}") from None
    return len(indexes)


def verify_database(
    session: psql.Session,
    dsn: str,
    backup_dir: Path,
    database: str,
    pg: binaries.PgBinaries,
    *,
    jobs: int,
    amcheck: bool,
    pg_bindir: str | None = None,
) -> VerifyResult:
    """Verify the newest dump of `database`; failures go into the result (Terminated propagates).

    session: the run's maintenance session, which creates and drops the throwaway database; dsn: for
    pg_restore and the sessions that count rows in the throwaway database.
    """
    log = get_logger().bind(database=database)
    result = VerifyResult(database)
    try:
        files = dumps.dump_files(dumps.database_dir(backup_dir, database))
        if not files:
            raise VerifyFailure(f"no dump found in {dumps.database_dir(backup_dir, database)}")
        stamp, dump = files[-1]
        result.dump = dump
        manifest, pg, checksum = _check_manifest(database, dump, pg, pg_bindir)
        scratch = throwaway_name(database, stamp)
        counter = TableCounter(
            lambda: psql.Session(pg, dsn, dbname=scratch, application_name="pgtool-verify"), jobs
        )
        try:
            try:
                # The TOC is read by a pg_restore process while the server creates the database.
                reading = _Background(_check_toc, database, dump, pg)
                session.rows(f"CREATE DATABASE {psql.identifier(scratch)} TEMPLATE template0;")
                toc: Toc = reading.result()
                # Each table is counted as soon as its data is in, while pg_restore builds indexes.
                ids = toc.table_ids((t["schema"], t["name"]) for t in manifest["tables"])

                def loaded(dump_id: int) -> None:
                    if dump_id in ids:
                        log.debug("table data restored, counting its rows", table=qualified(*ids[dump_id]))
                        counter.submit(ids[dump_id])

                result.restore_seconds = restore(dsn, dump, scratch, pg, jobs, on_data_loaded=loaded)
            except (VerifyFailure, DumpReadError, RestoreError):
                checksum.check()
                raise
            checksum.check()
            restored = counter.finish()
            problems = _compare_counts(manifest["tables"], restored)
            if problems:
                more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
                raise VerifyFailure(problems[0] + more)
            result.tables, result.rows = len(restored), sum(t["rows"] for t in restored)
            if amcheck:
                result.indexes_checked = _amcheck(dsn, scratch)
        finally:
            counter.abandon()
            _drop_throwaway(session, pg, dsn, scratch, result)
        log.info(
            "dump verified",
            file=str(dump),
            tables=result.tables,
            rows=result.rows,
            restore_s=result.restore_seconds,
            indexes_checked=result.indexes_checked,
        )
    except (PgtoolError, OSError) as exc:
        result.error = error_line(exc)
    if result.error:
        log.error("dump verification failed", file=str(result.dump or ""), error=result.error)
    return result


def _drop_throwaway(
    session: psql.Session, pg: binaries.PgBinaries, dsn: str, scratch: str, result: VerifyResult
) -> None:
    try:
        drop_database(pg, dsn, scratch, session)
    except PgtoolError as exc:
        message = exc.one_line()
        get_logger().error("could not drop throwaway database", database=scratch, error=message)
        result.error = result.error or f"could not drop throwaway database {scratch}: {message}"


def run_verify(
    dsn: str,
    backup_dir: Path,
    *,
    databases: list[str],
    amcheck: bool,
    jobs: int,
    pg_bindir: str | None,
    report: RunReport,
) -> list[VerifyResult]:
    """Verify the newest dump of each database (all under `backup_dir`, or those named).

    Raises ConnectError (server unreachable), LockBusyError (another verify runs on this server),
    OperationError (nothing to verify); per-database failures are in the results.
    """
    from pgtool.errors import UsageError

    if jobs < 1:
        raise UsageError("--jobs must be at least 1")
    backup_dir = Path(backup_dir)
    if not backup_dir.is_dir():
        raise OperationError(f"backup directory {backup_dir} does not exist")
    targets = list(dict.fromkeys(databases)) or databases_in(backup_dir)
    if not targets:
        raise OperationError(f"no dumps found in {backup_dir}", hint="run pgtool backup --dest first")
    results: list[VerifyResult] = []
    # The maintenance session is psql, not psycopg: it is ready in ~10 ms, so the first restore
    # need not wait for the driver's import. Ending it releases the advisory lock.
    with psql.Session(binaries.find(pg_bindir), dsn, application_name="pgtool-verify") as session:
        ((locked, version_num),) = session.rows(LOCK_SQL)
        if locked != "t":
            raise LockBusyError(
                "another pgtool verify is running against this server",
                hint="wait for it to finish; runs must not overlap",
            )
        pg = binaries.for_server(int(version_num) // 10000, pg_bindir)
        pg.path("pg_restore")
        with sigterm_raises():
            drop_stale(session, pg, dsn)
            try:
                for database in targets:
                    result = verify_database(
                        session,
                        dsn,
                        backup_dir,
                        database,
                        pg,
                        jobs=jobs,
                        amcheck=amcheck,
                        pg_bindir=pg_bindir,
                    )
                    results.append(result)
            finally:
                _record_metrics(report, results)
    return results


def _record_metrics(report: RunReport, results: list[VerifyResult]) -> None:
    for r in results:
        report.gauge(
            "pgtool_verify_database_success",
            "1 if the newest dump of this database restored and checked out",
            1 if r.ok else 0,
            database=r.database,
        )
        if r.restore_seconds is not None:
            report.gauge(
                "pgtool_verify_database_restore_duration_seconds",
                "How long the restore of this database's newest dump took",
                r.restore_seconds,
                database=r.database,
            )
