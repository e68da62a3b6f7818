"""The verified recovery point of a base drill: the last COMMIT the drill server actually replayed.

The drill server reports how far it replayed (`pg_last_wal_replay_lsn()`, the end of the last record
applied, static after promotion). The last COMMIT (or COMMIT PREPARED) record that starts before that
position and at or after the backup's start (its redo point: earlier commits were in the data files,
not replayed) is the recovery point: every transaction committed up to its commit time is proven to
come back. It is read with `pg_waldump --rmgr=Transaction` from verified copies of the archived
segments (restored from the directory or the repository by `pgtool.recovery.wal_source`, checksums
checked), newest segment first, stopping at
the first segment holding one. Each segment is dumped together with its successor so that a record
crossing into the next segment is still read whole.

pg_waldump prints commit times in its local time zone with microseconds; it runs with TZ=UTC so the
text is parsed exactly (`2026-12-06 02:00:00.123456 UTC`).
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pgtool.errors import OperationError
from pgtool.obs.metrics import RunReport
from pgtool.recovery.wal_source import WalArchive, as_archive
from pgtool.wal.names import format_lsn, parse_lsn

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    import psycopg

    from pgtool.physical.base_catalog import BaseBackupInfo
    from pgtool.recovery.archive_continuity import Continuity


class Connectable(Protocol):
    """A server to ask (`pgtool.pg.cluster.LocalCluster`)."""

    def connect(self, dbname: str = ...) -> AbstractContextManager[psycopg.Connection[Any]]: ...


_COMMIT = re.compile(
    r"\blsn: (?P<lsn>[0-9A-F]+/[0-9A-F]+), prev [0-9A-F]+/[0-9A-F]+, desc: "
    r"COMMIT(?:_PREPARED \d+:)? (?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}) "
    r"(?P<zone>[A-Za-z][A-Za-z0-9+:-]*)"
)


@dataclass(frozen=True)
class RecoveryPoint:
    """The last replayed commit: its record's LSN and its commit time (UTC)."""

    lsn: int
    commit_time: datetime

    @property
    def timestamp(self) -> float:
        return self.commit_time.timestamp()

    def describe(self) -> str:
        return f"commit at {self.commit_time.isoformat()} (LSN {format_lsn(self.lsn)})"


def parse_commits(text: str) -> list[RecoveryPoint]:
    """The COMMIT records in pg_waldump output (run with TZ=UTC), in order."""
    points = []
    for match in _COMMIT.finditer(text):
        if match.group("zone") != "UTC":  # TZ=UTC was not honoured: the time would be misread
            raise OperationError(f"pg_waldump printed a commit time in zone {match.group('zone')}, not UTC")
        when = datetime.strptime(match.group("time"), "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
        points.append(RecoveryPoint(parse_lsn(match.group("lsn")), when))
    return points


def last_replayed_commit(
    archive_dir: Path | WalArchive,
    segment_names: dict[int, str],
    *,
    start_lsn: int,
    replay_end_lsn: int,
    segment_size: int,
    pg_waldump: str,
) -> RecoveryPoint | None:
    """The last COMMIT record with start_lsn <= lsn < replay_end_lsn, or None when none was replayed.

    segment_names: segment number -> the archived file recovery read for it (on its timeline path);
    a number without an archived file ends the search (the backup carried it: nothing to read).
    """
    last = (max(replay_end_lsn, 1) - 1) // segment_size
    first = start_lsn // segment_size
    for segno in range(last, first - 1, -1):
        if segno not in segment_names:
            return None
        following = segment_names.get(segno + 1) if segno < last else None
        commits = [
            c
            for c in _dump_commits(archive_dir, segment_names[segno], following, pg_waldump)
            if start_lsn <= c.lsn < replay_end_lsn
        ]
        if commits:
            return max(commits, key=lambda c: c.lsn)
    return None


def _dump_commits(
    archive_dir: Path | WalArchive, name: str, following: str | None, pg_waldump: str
) -> list[RecoveryPoint]:
    from pgtool.pg import command

    archive = as_archive(archive_dir)
    with tempfile.TemporaryDirectory(prefix="pgtool-commit-") as tmp:
        for wanted in (name, following):
            if wanted is None:
                continue
            try:
                archive.fetch(wanted, Path(tmp) / wanted)
            except OperationError as exc:
                raise OperationError(f"cannot read archived segment {wanted}: {exc.message}") from None
        # pg_waldump stops with an error at the end of the WAL it was given: expected here.
        proc = command.run(
            [pg_waldump, "--rmgr=Transaction", str(Path(tmp) / name)],
            env={"TZ": "UTC"},
            capture_stdout=True,
            check=False,
            log_stderr_level="debug",
            what="pg_waldump",
        )
    return parse_commits(proc.stdout or "")


def record_gauges(
    report: RunReport,
    restore_seconds: float,
    replay_seconds: float,
    replayed_bytes: int,
    duration: float,
    point: RecoveryPoint | None,
) -> None:
    """The drill's recoverability gauges (docs/metrics.md)."""
    report.gauge(
        "pgtool_restore_duration_seconds",
        "Base drill: time to unpack and configure the base backup, before WAL replay",
        restore_seconds,
    )
    if replay_seconds > 0:
        report.gauge(
            "pgtool_replay_bytes_per_second",
            "Base drill: WAL bytes replayed (backup start LSN to last replayed record) per second of replay",
            replayed_bytes / replay_seconds,
        )
    report.gauge(
        "pgtool_predicted_rto_seconds",
        "Base drill: restore time plus replay time of the WAL the drill replayed (measured RTO of the drill)",
        duration,
    )
    if point is not None:
        report.gauge(
            "pgtool_verified_recovery_point_timestamp_seconds",
            "Base drill: commit time of the last transaction the drill replayed",
            point.timestamp,
        )


def verified_point(
    archive_dir: Path | WalArchive,
    continuity: Continuity,
    backup: BaseBackupInfo,
    replay_end: int,
    pg_waldump: str,
    cluster: Connectable,
) -> RecoveryPoint | None:
    """The last commit replayed, cross-checked against the server's own last replayed transaction time."""
    seg = backup.wal_segment_size
    index = as_archive(archive_dir).index(seg)
    start = parse_lsn(backup.start_lsn)
    names = {
        n: index.name(continuity.path, n)
        for n in range(start // seg, replay_end // seg + 1)
        if index.segment(continuity.path, n) is not None
    }
    point = last_replayed_commit(
        archive_dir,
        names,
        start_lsn=start,
        replay_end_lsn=replay_end,
        segment_size=seg,
        pg_waldump=pg_waldump,
    )
    with cluster.connect() as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM pg_catalog.pg_last_xact_replay_timestamp())::float8, "
            "pg_catalog.current_setting('recovery_target_lsn')"
        ).fetchone()
    server_time = row[0] if row is not None else None
    target = row[1] if row is not None else ""
    # The server's value is its last replayed commit or abort: never earlier than the last commit,
    # except for the record recovery stopped after (recovery_target_lsn, inclusive): PostgreSQL applies
    # it but returns from recoveryStopsAfter before recording its time.
    stop_record = point is not None and bool(target) and point.lsn >= parse_lsn(str(target))
    if (
        point is not None
        and not stop_record
        and (server_time is None or point.timestamp > float(server_time) + 1e-6)
    ):
        raise OperationError(
            f"the drill server did not replay the last archived commit ({point.describe()}); "
            f"its last replayed transaction is at {server_time}"
        )
    return point
