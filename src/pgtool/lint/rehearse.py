"""`pgtool lint --rehearse DSN`: apply the migrations to a throwaway copy, statement by statement,
measure what each one did, and compare it with the linter's prediction.

The copy is `CREATE DATABASE pgtool_rehearse_... TEMPLATE <the DSN's database>` on the DSN's server,
so it holds the real rows. PostgreSQL refuses to copy a database other sessions are connected to:
name a database nobody uses (a restored copy, a staging server). The copy is dropped at the end,
on failure and on SIGTERM too (the CLI runner turns SIGTERM into an exception that unwinds here).

Each statement runs in its own transaction (or alone, when PostgreSQL refuses a transaction block)
on the "work" session; a second session samples pg_locks for the work session's pid while it runs,
and again before COMMIT, when every lock it took is still held. Measured per statement: locks,
duration, WAL bytes (pg_current_wal_insert_lsn before and after: it includes other sessions' WAL
on that server and the writer probe's), relations whose relfilenode changed, and how long a probe
reader and writer on the touched table were blocked (`rehearse_probe`).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from pgtool.errors import OperationError, UsageError, error_line
from pgtool.lint import parse
from pgtool.lint.context import Finding
from pgtool.lint.rehearse_compare import Prediction, compare, predictions
from pgtool.lint.rehearse_probe import APPLICATION, Lock, Probe, Sampler
from pgtool.lint.settings import LintSettings
from pgtool.lint.source import Source, first_token
from pgtool.pg.conn import connect, dsn_params, with_params

MAINTENANCE_DB = "postgres"
COPY_PREFIX = "pgtool_rehearse_"

RELFILENODES_SQL = """
SELECT c.oid::pg_catalog.int8, c.relfilenode::pg_catalog.int8, n.nspname, c.relname, c.relkind::text
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm', 'i', 'p')
  AND n.nspname OPERATOR(pg_catalog.<>) ALL (ARRAY['pg_catalog', 'information_schema'])
  AND n.nspname NOT LIKE 'pg\\_toast%%'
"""
TARGET_SQL = """
SELECT n.nspname, c.relname, c.relkind::text,
       (SELECT a.attname FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
          AND a.attgenerated = '' AND a.attidentity <> 'a'
        ORDER BY a.attnum LIMIT 1)
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = pg_catalog.to_regclass(%s)
"""


@dataclass
class StatementRun:
    path: str
    line: int
    sql: str  # the statement's first line
    status: str = "not run"  # ok, failed, skipped, not run
    error: str | None = None
    in_transaction: bool = True  # False: PostgreSQL refused a transaction block; locks only sampled
    duration_s: float = 0.0
    wal_bytes: int | None = None
    locks: list[Lock] = field(default_factory=list)  # on relations that existed before, and new ones
    new_relations: set[int] = field(default_factory=set)
    rewritten: list[str] = field(default_factory=list)  # relations whose relfilenode changed
    probe_table: str | None = None
    reader_blocked_s: float | None = None
    writer_blocked_s: float | None = None
    probe_notes: list[str] = field(default_factory=list)
    prediction: Prediction = field(default_factory=Prediction)
    mismatches: list[str] = field(default_factory=list)


@dataclass
class Rehearsal:
    template: str
    copy: str
    statements: list[StatementRun] = field(default_factory=list)
    dropped: bool = False

    @property
    def mismatches(self) -> int:
        return sum(len(s.mismatches) for s in self.statements)

    @property
    def failed(self) -> int:
        return sum(1 for s in self.statements if s.status == "failed")


def rehearse(
    dsn: str, files: list[str], texts: dict[str, str], findings: list[Finding], settings: LintSettings
) -> Rehearsal:
    """Rehearse `files` (their `texts`, already linted into `findings`) on a copy of the DSN's database."""
    template = dsn_params(dsn).get("dbname")
    if not template:
        raise UsageError("--rehearse needs a DSN naming the database to copy", hint="dbname=app host=...")
    planned = _plan(files, texts, findings)
    copy = COPY_PREFIX + secrets.token_hex(6)
    result = Rehearsal(template, copy)
    admin = connect(dsn, dbname=MAINTENANCE_DB, application_name=APPLICATION)
    try:
        try:
            # Inside the try: a SIGTERM while CREATE DATABASE returns may come after it committed.
            _create_copy(admin, template, copy)
            _run_all(dsn, copy, planned, result)
        finally:
            _drop_copy(admin, copy)
            result.dropped = True
    finally:
        admin.close()
    return result


def _plan(files: list[str], texts: dict[str, str], findings: list[Finding]) -> list[StatementRun]:
    by_position: dict[tuple[str, int, int], list[Finding]] = {}
    for finding in findings:
        by_position.setdefault((finding.path, finding.line, finding.column), []).append(finding)
    planned: list[StatementRun] = []
    for path in files:
        text = texts[path].removeprefix("\ufeff")
        source = Source(path, text)
        for kind, node, start, end in parse.statements(text):
            begin = first_token(text, start, end)
            line, column = source.line_col(begin)
            body = text[begin:end].strip()
            run = StatementRun(path, line, body.splitlines()[0] if body else "")
            run.prediction = predictions(kind, node, by_position.get((path, line, column), []))
            run.prediction.sql = body
            planned.append(run)
    return planned


def _create_copy(admin: psycopg.Connection[Any], template: str, copy: str) -> None:
    try:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(copy), sql.Identifier(template))
        )
    except psycopg.errors.ObjectInUse:
        raise OperationError(
            f"cannot copy database {template!r}: other sessions are connected to it",
            hint="CREATE DATABASE ... TEMPLATE needs no other session on the template: rehearse from a "
            "restored copy or a staging database nobody is using",
        ) from None
    except psycopg.Error as exc:
        raise OperationError(
            f"cannot copy database {template!r}: {error_line(exc)}",
            hint="the DSN's role needs CREATEDB on a server where pgtool may create a throwaway database",
        ) from None


def _drop_copy(admin: psycopg.Connection[Any], copy: str) -> None:
    name = sql.Identifier(copy)
    if admin.info.server_version >= 130000:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        return
    admin.execute(
        "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity "
        "WHERE datname OPERATOR(pg_catalog.=) %s",
        (copy,),
    )
    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(name))


def _run_all(dsn: str, copy: str, planned: list[StatementRun], result: Rehearsal) -> None:
    work = connect(dsn, dbname=copy, application_name=APPLICATION)
    watch = connect(dsn, dbname=copy, application_name=APPLICATION)
    try:
        # Migrations name their tables unqualified: the work session gets back the search_path the
        # role and database would give it (the RESET value), which connect() pinned to ''.
        work.execute(
            "SELECT pg_catalog.set_config('search_path', s.reset_val, false) "
            "FROM pg_catalog.pg_settings s WHERE s.name OPERATOR(pg_catalog.=) 'search_path'"
        )
        work_pid = work.info.backend_pid
        initial = set(_relfilenodes(watch))  # relations the migration did not create
        failed = False
        for run in planned:
            result.statements.append(run)
            if failed:
                continue
            if run.prediction.kind == "TransactionStmt":
                run.status = "skipped"
                run.error = "transaction control: each statement runs in its own transaction here"
                continue
            _run_one(dsn, copy, work, watch, work_pid, initial, run)
            run.mismatches = compare(run)
            failed = run.status == "failed"
    finally:
        work.close()
        watch.close()


def _relfilenodes(watch: psycopg.Connection[Any]) -> dict[int, tuple[int, str, str]]:
    rows = watch.execute(RELFILENODES_SQL).fetchall()
    return {int(oid): (int(node), f"{schema}.{name}", kind) for oid, node, schema, name, kind in rows}


def _wal(watch: psycopg.Connection[Any]) -> str:
    row = watch.execute("SELECT pg_catalog.pg_current_wal_insert_lsn()::text").fetchone()
    return str(row[0]) if row else "0/0"


def _start_probes(
    dsn: str, copy: str, work: psycopg.Connection[Any], run: StatementRun, probes: list[Probe]
) -> None:
    """Start a reader (and, on a table, a writer) on the first existing relation the statement names."""
    for name in run.prediction.relations:
        row = work.execute(TARGET_SQL, (name,)).fetchone()
        if row is None:
            continue
        schema, relname, relkind, column = row
        table = sql.Identifier(schema, relname)
        run.probe_table = f"{schema}.{relname}"
        probe_dsn = with_params(dsn, dbname=copy)
        probes.append(Probe(probe_dsn, table, "read", None))
        if relkind in ("r", "p"):
            probes.append(Probe(probe_dsn, table, "write", column))
        for probe in probes:
            probe.start()
        for probe in probes:
            probe.ready.wait(10)
        return


def _run_one(
    dsn: str,
    copy: str,
    work: psycopg.Connection[Any],
    watch: psycopg.Connection[Any],
    work_pid: int,
    initial: set[int],
    run: StatementRun,
) -> None:
    before = _relfilenodes(watch)
    probes: list[Probe] = []
    sampler = Sampler(watch, work_pid)
    wal_before = _wal(watch)
    start = time.monotonic()
    try:
        _start_probes(dsn, copy, work, run, probes)  # filled as started: stopped below even if interrupted
        sampler.start()
        try:
            work.execute("BEGIN", prepare=False)
            start = time.monotonic()
            work.execute(run.prediction.sql, prepare=False)
        except psycopg.errors.ActiveSqlTransaction:  # CONCURRENTLY, VACUUM, ...: not in a block
            work.execute("ROLLBACK", prepare=False)
            run.in_transaction = False
            start = time.monotonic()
            work.execute(run.prediction.sql, prepare=False)
        run.duration_s = time.monotonic() - start
        sampler.stop()
        if run.in_transaction:
            sampler.sample()  # every lock the statement took is held until COMMIT
            work.execute("COMMIT", prepare=False)
        run.status = "ok"
    except psycopg.Error as exc:
        run.duration_s = time.monotonic() - start
        run.status = "failed"
        run.error = error_line(exc)
        if work.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            work.execute("ROLLBACK", prepare=False)
    finally:
        sampler.stop()
        for probe in probes:
            probe.stop()
    row = watch.execute(
        "SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_insert_lsn(), %s::pg_catalog.pg_lsn)",
        (wal_before,),
    ).fetchone()
    run.wal_bytes = int(row[0]) if row else None
    after = _relfilenodes(watch)
    run.locks = sorted(sampler.locks, key=lambda lock: (lock.name or "", lock.mode))
    run.new_relations = {lock.oid for lock in sampler.locks if lock.oid not in initial}
    run.rewritten = sorted(
        name
        for oid, (node, name, kind) in before.items()
        if oid in initial and kind in ("r", "m") and oid in after and after[oid][0] != node
    )
    if sampler.error:
        run.probe_notes.append(f"lock sampling stopped: {sampler.error}")
    for probe in probes:
        blocked = round(probe.result.blocked_s, 3)
        if probe.kind == "read":
            run.reader_blocked_s = blocked
        else:
            run.writer_blocked_s = blocked
        run.probe_notes.extend(f"{probe.kind} probe: {error}" for error in probe.result.errors)
