"""The base-backup restore drill behind `pgtool verify --base`: restore, replay, start, query, delete.

The newest complete base backup (an incremental one with its whole chain: every member checked with
pg_verifybackup, then pg_combinebackup, `base_combine`) is restored into a throwaway local cluster of
the backup's PostgreSQL major, configured like `pgtool recover` with no target (recovery_target_lsn =
the archive's last complete record, so PostgreSQL refuses to promote before it), started, and checked:
it must leave recovery, have replayed into the newest archived segment (so the archive really was read,
not just the WAL inside the backup), accept queries in every database, and with `amcheck` pass
`bt_index_check` on every valid btree index. It then reports the verified recovery point (the last
COMMIT replayed, its commit time and LSN: `pgtool.recovery.recovery_point`), the restore time (unpacking
and configuring), the replay time (server start to promotion) and the replay rate (WAL bytes from the
backup's start LSN to the last replayed record, per second of replay). While waiting for replay, the
server must stay alive: if it dies (a damaged segment, a missing one before the target) the drill fails
at once quoting its last FATAL log line. The cluster is deleted whatever happens. Any failure raises a
`pgtool.errors` exception naming the step.
"""

from __future__ import annotations

import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from pgtool.errors import FindingsError, OperationError, PgtoolError
from pgtool.obs.logging import get_logger
from pgtool.obs.metrics import RunReport
from pgtool.physical import base_catalog, base_chain, base_combine
from pgtool.recovery import archive_continuity, recovery_config, recovery_point
from pgtool.recovery.wal_source import WalArchive, as_archive
from pgtool.wal.listing import format_lsn, parse_lsn, parse_segment_name

if TYPE_CHECKING:
    import psycopg

    from pgtool.pg.cluster import LocalCluster

_REDO_DONE = re.compile(r"redo done at ([0-9A-F]+/[0-9A-F]+)")
READY_TIMEOUT = 3600.0


@dataclass
class BaseDrillResult:
    """What the drill proved."""

    backup_id: str
    server_version: str
    archive_first_segment: str
    archive_last_segment: str
    replayed_to_lsn: str | None
    timeline: int
    databases_checked: list[str]
    indexes_checked: int
    replay_duration_seconds: float  # restore + replay (the drill's measured RTO)
    restore_seconds: float = 0.0
    replay_seconds: float = 0.0
    replayed_bytes: int = 0
    # The verified recovery point (plain values: the evidence record stores every field as JSON).
    recovery_point_lsn: str | None = None
    recovery_point_time: str | None = None  # ISO 8601, UTC, microseconds
    recovery_point_timestamp: float | None = None  # the same, epoch seconds

    @property
    def replay_bytes_per_second(self) -> float:
        return self.replayed_bytes / self.replay_seconds if self.replay_seconds > 0 else 0.0

    def summary(self) -> str:
        amcheck = f", {self.indexes_checked} btree indexes passed amcheck" if self.indexes_checked else ""
        return (
            f"base backup {self.backup_id} (PostgreSQL {self.server_version}) restored and replayed "
            f"{self.archive_first_segment}..{self.archive_last_segment} to {self.replayed_to_lsn or '?'} "
            "(every WAL file checked by restore-wal: SHA-256 record and page header) "
            f"in {self.replay_duration_seconds:.1f}s; {len(self.databases_checked)} databases answer queries"
            f"{amcheck}; verified recovery point: "
            + (
                f"commit at {self.recovery_point_time} (LSN {self.recovery_point_lsn})"
                if self.recovery_point_time
                else "no commit replayed since the backup"
            )
            + f"; restore {self.restore_seconds:.1f}s, replay {self.replay_seconds:.1f}s "
            f"({self.replayed_bytes} bytes, {self.replay_bytes_per_second:.0f} bytes/s)"
        )


def run_base_drill(
    base_dir: Path,
    archive_dir: Path | WalArchive,
    *,
    pg_bindir: str | None,
    amcheck: bool,
    report: RunReport,
    work_dir: Path | None = None,
) -> BaseDrillResult:
    """Restore the newest base backup in `base_dir`, replay `archive_dir` to its end, check, delete.

    archive_dir: an archive directory, or a repository's WAL (`pgtool.recovery.wal_source.RepoArchive`:
    the throwaway server then runs `restore-wal --repo`; `pgtool.physical.repo_drill` drills that way).
    pg_bindir: where the server binaries of the backup's major are (default: search as usual).
    work_dir: parent for the throwaway cluster (default: the system temp dir; needs room for the
    unpacked backup). Adds `pgtool_verify_base_replay_duration_seconds` to `report`.
    Raises FindingsError when the drill ran and failed (recovery ending early, the server not
    starting or stopping during replay, a smoke query or amcheck failing), OperationError when there
    is nothing to drill or the archive has a gap, BinaryNotFoundError.
    """
    from pgtool.pg import binaries
    from pgtool.pg.cluster import LocalCluster
    from pgtool.pg.privileges import give_to_server
    from pgtool.pg.terminate import sigterm_raises

    log = get_logger().bind(drill="base")
    backups = base_catalog.list_base_backups(Path(base_dir))
    if not backups:
        raise OperationError(f"no complete base backup in {base_dir}", hint="take one with pgtool basebackup")
    backup = backups[-1]
    chain = base_chain.chain_of(backups, backup)  # a broken chain is refused before anything starts
    archive = as_archive(archive_dir)
    continuity = archive_continuity.check_continuity(
        archive, backup, purpose=f"to replay base backup {backup.id} to the end of the archive"
    )
    tools = binaries.find_major(backup.major, pg_bindir)
    root = Path(tempfile.mkdtemp(prefix="pgtool-drill-", dir=work_dir))
    give_to_server(root)
    started = time.monotonic()
    # SIGTERM must unwind too: the throwaway server is not our child and would outlive us.
    with sigterm_raises():
        try:
            cluster = LocalCluster(
                tools, root, data_dir=root / "data", superuser=backup.superuser or "postgres"
            )
        except BaseException:
            import shutil

            shutil.rmtree(root, ignore_errors=True)  # e.g. no copy of the binaries the server user can run
            raise
        try:
            base_combine.restore_chain(chain, cluster.data_dir, tools, scratch_parent=root)
            # Production's pg_hba.conf may demand passwords or peer names we do not have: the throwaway
            # server accepts its own unix socket only (no TCP line), without a password.
            cluster.set_hba(["local all all trust"])
            from pgtool.recovery.archive_end import end_target

            end = end_target(archive, backup, continuity.last_segment, tools.path("pg_waldump"))
            target = recovery_config.RecoveryTarget("lsn", end) if end else None
            settings = recovery_config.recovery_settings(archive, target=target)
            recovery_config.write_recovery_config(cluster.data_dir, settings)
            cluster.settings.update(
                recovery_config.control_minimums(tools.path("pg_controldata"), cluster.data_dir)
            )
            restore_seconds = round(time.monotonic() - started, 3)
            log.info("replaying", backup=backup.id, until=continuity.last_segment)
            try:
                cluster.start(timeout=int(READY_TIMEOUT))
            except PgtoolError:
                if _postmaster_alive(cluster.data_dir):
                    raise
                _raise_stopped(cluster)  # died before accepting connections: same report
            _wait_promoted(cluster, READY_TIMEOUT)
            duration = round(time.monotonic() - started, 3)
            replay_seconds = round(duration - restore_seconds, 3)
            replayed = _redo_done(cluster.log_file)
            _check_replayed_far_enough(replayed, continuity.last_segment, backup.wal_segment_size, cluster)
            replay_end = _replay_end(cluster)
            point = recovery_point.verified_point(
                archive, continuity, backup, replay_end, tools.path("pg_waldump"), cluster
            )
            databases, indexes = _smoke(cluster, amcheck)
        except PgtoolError as exc:
            tail = cluster.log_tail(5)
            if not tail or cluster.log_tail(1) in exc.message:  # start() already quoted the log
                tail = ""
            # The drill ran and the backup did not come back: a finding (like a dump that fails
            # verify), reported as outcome=findings, not as an error of pgtool itself.
            raise FindingsError(
                f"base drill of {backup.id} failed: {exc.message}"
                + (f" (server log: {tail})" if tail else ""),
                hint=exc.hint,
            ) from None
        finally:
            cluster.cleanup()
            import shutil

            shutil.rmtree(root, ignore_errors=True)
    report.gauge(
        "pgtool_verify_base_replay_duration_seconds",
        "Restore and WAL replay time of the base-backup drill",
        duration,
    )
    replayed_bytes = max(0, replay_end - parse_lsn(backup.start_lsn))
    recovery_point.record_gauges(report, restore_seconds, replay_seconds, replayed_bytes, duration, point)
    result = BaseDrillResult(
        backup_id=backup.id,
        server_version=backup.server_version,
        archive_first_segment=continuity.first_segment,
        archive_last_segment=continuity.last_segment,
        replayed_to_lsn=format_lsn(replayed) if replayed is not None else None,
        timeline=continuity.timeline,
        databases_checked=databases,
        indexes_checked=indexes,
        replay_duration_seconds=duration,
        restore_seconds=restore_seconds,
        replay_seconds=replay_seconds,
        replayed_bytes=replayed_bytes,
        recovery_point_lsn=format_lsn(point.lsn) if point else None,
        recovery_point_time=point.commit_time.isoformat() if point else None,
        recovery_point_timestamp=point.timestamp if point else None,
    )
    log.info("base drill passed", backup=backup.id, replayed_to=result.replayed_to_lsn)
    return result


def _replay_end(cluster: LocalCluster) -> int:
    """The end of the last WAL record the drill server applied (static after promotion)."""
    with cluster.connect() as conn:
        row = conn.execute("SELECT pg_catalog.pg_last_wal_replay_lsn()::text").fetchone()
    if row is None or row[0] is None:
        raise OperationError("the drill server reports no replayed WAL (pg_last_wal_replay_lsn is null)")
    return parse_lsn(str(row[0]))


def _wait_promoted(cluster: LocalCluster, timeout: float) -> None:
    """Poll until the server has left recovery; fail at once when it is no longer running."""
    from pgtool.errors import ConnectError

    deadline = time.monotonic() + timeout
    while True:
        if not _postmaster_alive(cluster.data_dir):
            _raise_stopped(cluster)
        try:
            with cluster.connect() as conn:
                row = conn.execute("SELECT pg_catalog.pg_is_in_recovery()").fetchone()
            if row is not None and not row[0]:
                return
        except (ConnectError, OSError):
            pass  # still starting up, or shutting down: the next round tells
        except Exception as exc:  # psycopg.Error while the server goes away
            get_logger().debug("drill server not ready", error=str(exc))
        if time.monotonic() > deadline:
            raise OperationError(f"the drill server did not finish replay within {timeout:.0f}s")
        time.sleep(0.5)


def _raise_stopped(cluster: LocalCluster) -> NoReturn:
    fatal = last_fatal_line(cluster.log_file)
    raise OperationError(
        "the drill server stopped during WAL replay"
        + (f": {fatal}" if fatal else " (no FATAL line in its log)"),
        hint="a WAL file could not be restored or replayed: check the archive (pgtool status)",
    )


def _postmaster_alive(data_dir: Path) -> bool:
    import os

    try:
        pid = int((Path(data_dir) / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, as the server user
    return True


def last_fatal_line(log_file: Path) -> str | None:
    """The server log's last FATAL or PANIC line (stripped of its timestamp prefix), if any."""
    try:
        lines = log_file.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        for level in ("PANIC:", "FATAL:"):
            if level in line:
                return line[line.index(level) :].strip()
    return None


def _redo_done(log_file: Path) -> int | None:
    try:
        matches = _REDO_DONE.findall(log_file.read_text(errors="replace"))
    except OSError:
        return None
    return parse_lsn(matches[-1]) if matches else None


def _check_replayed_far_enough(
    replayed: int | None, last_segment: str, seg_size: int, cluster: object
) -> None:
    if replayed is None:
        return  # logging went elsewhere (logging_collector in the backup's config): nothing to compare
    _tli, last_segno = parse_segment_name(last_segment, seg_size)
    if replayed // seg_size < last_segno:
        raise OperationError(
            f"recovery ended at {format_lsn(replayed)}, before the newest archived segment {last_segment}",
            hint="restore-wal could not deliver a segment: check the archive and restore_command",
        )


def _amcheck_schema(conn: psycopg.Connection[Any]) -> str:
    """The schema amcheck lives in, creating it (in a schema of the drill's own) when missing.

    The session's search_path is '' (pgtool.pg.conn), so the extension needs an explicit schema, and
    its functions are called qualified. The throwaway cluster is deleted afterwards.
    """
    from psycopg import sql

    query = (
        "SELECT n.nspname FROM pg_catalog.pg_extension e "
        "JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'amcheck'"
    )
    row = conn.execute(query).fetchone()
    if row is None:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS pgtool_drill"))
        conn.execute(sql.SQL("CREATE EXTENSION amcheck SCHEMA pgtool_drill"))
        row = conn.execute(query).fetchone()
        assert row is not None  # created just now, in this session
    return str(row[0])


def _smoke(cluster: LocalCluster, amcheck: bool) -> tuple[list[str], int]:
    """Query every connectable database; with amcheck, bt_index_check every valid btree index."""
    import psycopg
    from psycopg import sql

    checked: list[str] = []
    indexes = 0
    with cluster.connect() as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname"
            ).fetchall()
        ]
    for name in names:
        with cluster.connect(name) as conn:
            try:
                conn.execute("SELECT count(*) FROM pg_class").fetchone()
            except psycopg.Error as exc:
                raise OperationError(f"smoke query failed in database {name}: {exc}") from None
            if amcheck:
                try:
                    schema = _amcheck_schema(conn)
                except psycopg.Error as exc:
                    raise OperationError(
                        f"cannot use amcheck in database {name}: {exc}",
                        hint="install the PostgreSQL contrib package for this major version",
                    ) from None
                check = sql.SQL("SELECT {}.bt_index_check(%s::regclass)").format(sql.Identifier(schema))
                rows = conn.execute(
                    "SELECT c.oid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'btree' AND i.indisvalid "
                    "AND i.indisready AND c.relpersistence <> 't' AND c.relkind = 'i'"  # not partitioned (I)
                ).fetchall()
                for (index,) in rows:
                    try:
                        conn.execute(check, (index,))
                    except psycopg.Error as exc:
                        raise OperationError(
                            f"amcheck failed on index {index} in database {name}: {exc}"
                        ) from None
                    indexes += 1
        checked.append(name)
    return checked, indexes
