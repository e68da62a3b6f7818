"""Recovery across a timeline switch (a promoted standby archiving into the same archive), xid and
restore-point targets, and the pure pieces: history parsing, backup choice, restore_command quoting."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from physical_support import ArchivingPrimary, adopt, archive_command, recover

from pgharness import retry
from pgtool.errors import OperationError, UsageError
from pgtool.physical.base_catalog import BaseBackupInfo, list_base_backups
from pgtool.recovery.archive_continuity import check_continuity
from pgtool.recovery.recover import build_target, choose_backup
from pgtool.recovery.recovery_config import restore_command
from pgtool.wal.listing import list_archive, parse_history


def _rows(cluster) -> list[int]:
    with cluster.connect(pin="off") as conn:
        return [r[0] for r in conn.execute("SELECT i FROM t ORDER BY i").fetchall()]


def test_recovery_follows_the_timeline_history_of_a_promoted_standby(
    primary: ArchivingPrimary, work_dir: Path
) -> None:
    primary.sql("CREATE TABLE t (i int PRIMARY KEY)")
    primary.sql("INSERT INTO t SELECT generate_series(1, 10)")
    primary.basebackup()
    primary.sql("INSERT INTO t SELECT generate_series(11, 20)")
    primary.switch_wal()

    # A standby from the backup, promoted after catching up, archiving into the same archive (failover).
    conninfo = f"host=127.0.0.1 port={primary.cluster.port} user=postgres"
    assert recover(primary, work_dir / "standby", "--standby", "--primary-conninfo", conninfo).returncode == 0
    promoted = adopt(primary.major, work_dir / "standby")
    promoted.settings.update({"archive_mode": "on", "archive_command": archive_command(primary.archive_dir)})
    copy = None
    try:
        promoted.start()
        retry(lambda: _rows(promoted) == list(range(1, 21)), timeout=60)
        primary.cleanup()  # the old primary is gone
        with promoted.connect(pin="off") as conn:
            conn.execute("SELECT pg_promote()")
        promoted.wait_until_ready(60, primary=True)
        with promoted.connect(pin="off") as conn:
            for first in (21, 26):  # two timeline-2 segments
                conn.execute("INSERT INTO t SELECT generate_series(%s::int, %s::int + 4)", (first, first))
                name = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]
        retry(lambda: any(i.segment == name for i in list_archive(primary.archive_dir)), timeout=60)

        history = [i for i in list_archive(primary.archive_dir) if i.kind == "history"]
        assert [h.wal_name for h in history] == ["00000002.history"]
        backup = list_base_backups(primary.base_dir)[0]
        continuity = check_continuity(primary.archive_dir, backup)
        assert continuity.timeline == 2 and continuity.last_segment == name
        assert [s.tli for s in continuity.path] == [1, 2]

        # Recovery from the timeline-1 backup follows the history to timeline 2's newest row.
        result = recover(primary, work_dir / "pitr")
        assert result.returncode == 0, result.stderr
        copy = adopt(primary.major, work_dir / "pitr")
        copy.start()
        copy.wait_until_ready(120, primary=True)
        assert _rows(copy) == list(range(1, 31))
        with copy.connect(pin="off") as conn:
            assert conn.execute("SELECT timeline_id FROM pg_control_checkpoint()").fetchone()[0] == 3

        # A missing timeline-2 segment is a gap, named with its timeline.
        tl2 = [i for i in list_archive(primary.archive_dir) if i.kind == "segment" and i.timeline == 2]
        assert len(tl2) >= 2
        (primary.archive_dir / tl2[0].name).unlink()
        with pytest.raises(OperationError, match=f"segment {tl2[0].segment} is missing"):
            check_continuity(primary.archive_dir, backup)
    finally:
        promoted.cleanup()
        if copy is not None:
            copy.cleanup()


def test_recover_to_a_transaction_id_and_to_a_restore_point(
    primary: ArchivingPrimary, work_dir: Path
) -> None:
    primary.sql("CREATE TABLE t (i int PRIMARY KEY)")
    primary.basebackup()
    with primary.cluster.connect(pin="off") as conn, conn.transaction():
        conn.execute("INSERT INTO t VALUES (1)")
        xid = conn.execute("SELECT pg_current_xact_id()::text").fetchone()[0]
    primary.sql("INSERT INTO t VALUES (2)")
    primary.sql("SELECT pg_create_restore_point('before_three')")
    primary.sql("INSERT INTO t VALUES (3)")
    primary.switch_wal()

    for args, expected in ((["--target-xid", xid], [1]), (["--target-name", "before_three"], [1, 2])):
        pgdata = work_dir / f"pitr-{args[0][2:]}"
        result = recover(primary, pgdata, *args)
        assert result.returncode == 0, result.stderr
        copy = adopt(primary.major, pgdata)
        try:
            copy.start()
            copy.wait_until_ready(120, primary=True)
            assert _rows(copy) == expected
        finally:
            copy.cleanup()


def test_history_files_parse() -> None:
    text = "# comment\n1\t0/3000158\tno recovery target specified\n\n2\t1/A0\tbefore 2026-11-24\n"
    entries = parse_history(text)
    assert [(e.parent, e.switchpoint) for e in entries] == [(1, 0x3000158), (2, (1 << 32) | 0xA0)]
    with pytest.raises(ValueError):
        parse_history("1\n")


def _info(stamp: str, stop_time: str, stop_lsn: str, next_xid: int) -> BaseBackupInfo:
    return BaseBackupInfo(
        id=stamp,
        start_time=stop_time,
        stop_time=stop_time,
        start_lsn=stop_lsn,
        stop_lsn=stop_lsn,
        start_wal_file="000000010000000000000002",
        stop_wal_file="000000010000000000000002",
        timeline=1,
        system_identifier="1",
        server_version="15.20",
        server_version_num=150020,
        wal_segment_size=16 * 1024 * 1024,
        compression="none",
        wal_method="stream",
        size_bytes=1,
        next_xid=next_xid,
    )


def test_the_newest_backup_finished_before_the_target_is_chosen() -> None:
    backups = [
        _info("20261124T100000Z", "2026-11-24T10:00:05+00:00", "0/3000000", 800),
        _info("20261124T120000Z", "2026-11-24T12:00:05+00:00", "0/9000000", 900),
    ]

    def chosen(**target: str) -> str:
        return choose_backup(backups, build_target(**target)).id

    assert chosen(time="2026-11-24T11:00:00+00:00") == "20261124T100000Z"
    assert chosen(time="2026-11-24T14:00:00+02:00") == "20261124T100000Z"  # 12:00:00 UTC: before the stop
    assert chosen(time="2026-11-24T14:00:06+02:00") == "20261124T120000Z"
    assert chosen(time="2026-11-24T12:00:06Z") == "20261124T120000Z"
    assert chosen(lsn="0/8FFFFFF") == "20261124T100000Z"
    assert chosen(xid="900") == "20261124T120000Z"
    assert choose_backup(backups, None).id == "20261124T120000Z"
    with pytest.raises(OperationError, match="earlier than every base backup"):
        chosen(time="2026-11-24T10:00:04+00:00")
    with pytest.raises(UsageError, match="no UTC offset"):
        build_target(time="2026-11-24 10:00:04")


def test_restore_command_quotes_for_the_shell_and_for_percent() -> None:
    command = restore_command(Path("/wal archive/100%"), executable="/opt/my venv/bin/pgtool")
    assert command == "'/opt/my venv/bin/pgtool' restore-wal %f %p --archive-dir '/wal archive/100%%'"
    # What the shell sees after PostgreSQL replaced %f, %p and %%:
    expanded = command.replace("%f", "F").replace("%p", "P").replace("%%", "%")
    assert shlex.split(expanded) == [
        "/opt/my venv/bin/pgtool",
        "restore-wal",
        "F",
        "P",
        "--archive-dir",
        "/wal archive/100%",
    ]
