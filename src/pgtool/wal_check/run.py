"""`pgtool check`: every check in order, then the end-to-end proof, then the run's gauges.

The end-to-end proof is pgBackRest's `check`, plus a verified read: a restore point named
`pgtool-check-<token>` (so the WAL holds a record to switch away from, and the operator can find the
check in the server's log), `pg_switch_wal()`, then polling the archive until the switched segment is
there and reads back verified (page header, system identifier, and the archive's own checksum or
authentication), for at most --timeout seconds. pg_stat_archiver is read at each poll: PostgreSQL's
archiver tries a segment three times and then sleeps 60 s, so once it has failed three times on this
segment the check stops waiting and quotes the failure.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, LiteralString

import psycopg

from pgtool.errors import UsageError
from pgtool.pg.conn import connect, describe_target
from pgtool.repo import RepoError
from pgtool.wal.archive import CorruptArchiveError
from pgtool.wal_check.model import OK, PROBLEM, SKIPPED, WARNING, CheckResult
from pgtool.wal_check.server import check_settings, read_settings
from pgtool.wal_check.target import DirTarget, RepoTarget, Target

if TYPE_CHECKING:
    from pgtool.obs.metrics import RunReport

ARCHIVER_SQL = """
SELECT failed_count, last_failed_wal, last_failed_time::text, last_archived_wal
FROM pg_catalog.pg_stat_archiver
"""
ARCHIVER_ATTEMPTS = 3  # PostgreSQL's NUM_ARCHIVE_RETRIES: then the archiver sleeps 60 s


@dataclass
class CheckRequest:
    dsn: str
    repo: str | None = None
    repo_key_file: str | None = None
    archive_dir: str | None = None
    timeout: float = 60.0
    poll_interval: float = 0.5


def make_target(request: CheckRequest) -> Target:
    if bool(request.repo) == bool(request.archive_dir):
        raise UsageError(
            "give --repo or --archive-dir (or $PGTOOL_REPO / $PGTOOL_ARCHIVE_DIR), exactly one",
            hint="the archive archive_command writes to",
        )
    if request.timeout <= 0:
        raise UsageError("--timeout must be positive")
    if request.repo:
        return RepoTarget(request.repo, request.repo_key_file, request.timeout)
    assert request.archive_dir is not None
    return DirTarget(request.archive_dir)


def run_check(request: CheckRequest, report: RunReport | None = None) -> CheckResult:
    """Run every check; ConnectError (exit 3) when the server cannot be reached, UsageError (2) for bad
    options. Problems found are in the result (the CLI exits 1 for them), never raised."""
    target = make_target(request)
    with connect(request.dsn, autocommit=True, application_name="pgtool-check") as conn:
        result = CheckResult(target=describe_target(conn.info.dsn), archive=f"{target.kind} {target.display}")
        status = target.check()
        result.add(target.kind, status.state, status.message, status.fix)
        row = conn.execute("SELECT current_user, pg_catalog.pg_is_in_recovery()").fetchone()
        role, in_recovery = row if row else ("?", False)
        archives = check_settings(result, read_settings(conn), role, target)
        server_sysid = _server_system_id(conn, result, role)
        # An archive without WAL records no identifier yet: settled after the end-to-end check then.
        sysid_pending = status.state != PROBLEM and not _check_system_id(result, target, server_sysid)
        if in_recovery:
            result.add(
                "end-to-end",
                PROBLEM,
                "the server is in recovery (a standby): pg_switch_wal() cannot run there",
                "run pgtool check against the primary",
            )
        elif not archives:
            result.add("end-to-end", SKIPPED, "not tried: the server does not archive (see above)")
        elif status.state == PROBLEM:
            result.add("end-to-end", SKIPPED, f"not tried: the {target.kind} is not usable (see above)")
        else:
            _end_to_end(conn, result, target, request, server_sysid, role)
        if status.state == WARNING and isinstance(target, RepoTarget) and target.wal is not None:
            # The repository did not exist before the switch; archive-wal made it: check it now.
            later = target.check()
            result.replace(target.kind, later.state, later.message, later.fix)
            status = later
        if sysid_pending:
            _check_system_id(result, target, server_sysid, final=True)
    if report is not None:
        record_gauges(report, result)
    return result


def _server_system_id(conn: psycopg.Connection[Any], result: CheckResult, role: str) -> int | None:
    denied = (
        "system identifier",
        WARNING,
        f"role {role} may not read pg_control_system()",
        f"GRANT EXECUTE ON FUNCTION pg_catalog.pg_control_system() TO {role}",
    )
    row = _granted(conn, result, denied, ("SELECT system_identifier FROM pg_catalog.pg_control_system()", []))
    return int(row[0]) if row else None


def _granted(
    conn: psycopg.Connection[Any],
    result: CheckResult,
    denied: tuple[str, str, str, str],
    *statements: tuple[LiteralString, list[Any]],
) -> tuple[Any, ...] | None:
    """The last statement's row; None, with the `denied` finding, when the role may not run them."""
    row = None
    try:
        for query, params in statements:
            row = conn.execute(query, params).fetchone()
    except psycopg.errors.InsufficientPrivilege:
        result.add(*denied)
        return None
    return row


def _check_system_id(result: CheckResult, target: Target, server: int | None, *, final: bool = False) -> bool:
    """Compare the archive's system identifier with the server's. False (nothing added) when the
    archive holds none yet and this is not the `final` call: the caller asks again after the switch."""
    if server is None:
        return True
    if isinstance(target, RepoTarget) and target.wal is None:
        return final  # no repository yet; at the end, the end-to-end line already says why
    try:
        archived = target.system_id()
    except (CorruptArchiveError, OSError, RepoError) as exc:
        result.add("system identifier", PROBLEM, f"cannot read the archive's system identifier: {exc}")
        return True
    if archived is None:
        if not final:
            return False
        result.add("system identifier", WARNING, f"the {target.kind} records no system identifier yet")
        return True
    if archived != server:
        result.add(
            "system identifier",
            PROBLEM,
            f"the {target.kind} holds WAL of database system {archived}, this server is system {server}: "
            "archive-wal refuses its segments",
            "give this cluster an archive of its own (another --repo prefix or directory); if this cluster "
            "replaced the old one (initdb, pg_upgrade), archive with --allow-system-id-change",
        )
    else:
        result.add("system identifier", OK, f"the {target.kind} holds WAL of this server's system {server}")
    return True


def _archiver(conn: psycopg.Connection[Any]) -> tuple[int, str | None, str | None, str | None]:
    row = conn.execute(ARCHIVER_SQL).fetchone()
    assert row is not None
    return int(row[0]), row[1], row[2], row[3]


def _end_to_end(
    conn: psycopg.Connection[Any],
    result: CheckResult,
    target: Target,
    request: CheckRequest,
    server_sysid: int | None,
    role: str,
) -> None:
    point = f"pgtool-check-{os.urandom(4).hex()}"
    failed_before = _archiver(conn)[0]
    denied = (
        "end-to-end",
        PROBLEM,
        f"role {role} may not create a restore point and switch WAL",
        f"GRANT EXECUTE ON FUNCTION pg_catalog.pg_create_restore_point(text) TO {role}; "
        f"GRANT EXECUTE ON FUNCTION pg_catalog.pg_switch_wal() TO {role} (or run check as a superuser)",
    )
    row = _granted(
        conn,
        result,
        denied,
        ("SELECT pg_catalog.pg_create_restore_point(%s)", [point]),
        ("SELECT pg_catalog.pg_walfile_name(pg_catalog.pg_switch_wal())", []),
    )
    if row is None:
        return  # denied: the finding says so
    segment = str(row[0])
    result.segment, result.restore_point = segment, point
    start = time.monotonic()
    deadline = start + request.timeout
    error = ""
    failures = 0
    last: tuple[int, str | None, str | None, str | None] = (failed_before, None, None, None)
    while True:
        try:
            archived = target.find(segment) if _ready(target) else None
            error = ""
        except (RepoError, CorruptArchiveError, OSError) as exc:  # keep polling; quote the last
            archived, error = None, " ".join(str(exc).split())
        if archived is not None:
            problem = target.verify(archived, server_sysid)
            if problem is not None:
                result.add(
                    "end-to-end",
                    PROBLEM,
                    f"{segment} arrived in the {target.kind} but does not read back verified: {problem}",
                    "find what damaged it (storage, another writer) before trusting the archive",
                )
                return
            result.archive_seconds = round(time.monotonic() - start, 3)
            result.add(
                "end-to-end",
                OK,
                f"restore point {point}, WAL switched: {segment} archived and read back verified "
                f"in {result.archive_seconds:.1f} s",
            )
            return
        last = _archiver(conn)
        failures = last[0] - failed_before
        now = time.monotonic()
        if now >= deadline or (failures >= ARCHIVER_ATTEMPTS and last[1] == segment):
            break
        time.sleep(min(request.poll_interval, max(deadline - now, 0.01)))
    waited = time.monotonic() - start
    if failures > 0:
        cause = (
            f"the archiver failed {failures} time(s) meanwhile: last_failed_wal = {last[1]}, "
            f"last_failed_time = {last[2]}"
        )
        fix = "read archive_command's error in the server log; run it by hand as the server's user"
    else:
        cause = f"pg_stat_archiver shows no failure (last_archived_wal = {last[3]}): it may be behind"
        fix = "check that archive_command writes to this archive, or raise --timeout on a busy server"
    if error:
        cause += f"; looking for it failed: {error}"
    result.add(
        "end-to-end",
        PROBLEM,
        f"{segment} (switched after restore point {point}) not in the {target.kind} "
        f"after {waited:.0f} s; {cause}",
        fix,
    )


def _ready(target: Target) -> bool:
    """The archive can be looked in: a repository that did not exist before the switch is opened once
    archive-wal has created it."""
    if isinstance(target, DirTarget) or target.wal is not None:
        return True
    return target.reopen()


def record_gauges(report: RunReport, result: CheckResult) -> None:
    """The check's gauges (docs/check.md, docs/metrics.md)."""
    report.gauge("pgtool_check_ok", "1 if pgtool check found no problem, else 0", 1 if result.ok else 0)
    report.gauge("pgtool_check_problems", "Problems pgtool check found", len(result.problems))
    report.gauge("pgtool_check_warnings", "Warnings pgtool check reported", len(result.warnings))
    if result.archive_seconds is not None:
        report.gauge(
            "pgtool_check_archive_seconds",
            "pgtool check: seconds from pg_switch_wal() until the segment was in the archive and verified",
            result.archive_seconds,
        )
