"""pgtool basebackup against real PostgreSQL 15 and 18: checked, recorded, retained, WAL pruned."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pytest
from physical_support import ArchivingPrimary, adopt, recover
from psycopg import sql

from pgharness import run_pgtool
from pgtool.errors import OperationError
from pgtool.pg.binaries import for_server
from pgtool.physical import base_verify
from pgtool.physical.base_catalog import LOCK_FILE, METADATA_FILE, list_base_backups
from pgtool.wal.listing import list_archive, parse_segment_name, segment_name


@pytest.mark.all_versions
def test_basebackup_is_checked_recorded_and_pushed(primary: ArchivingPrimary, pushgateway) -> None:
    primary.sql("CREATE TABLE t (i int PRIMARY KEY)")
    primary.sql("INSERT INTO t SELECT generate_series(1, 1000)")
    result = primary.basebackup("--pushgateway", pushgateway.url)

    entries = sorted(p.name for p in primary.base_dir.iterdir())
    backups = list_base_backups(primary.base_dir)
    assert len(backups) == 1
    info = backups[0]
    assert entries == sorted([LOCK_FILE, info.id])  # nothing temporary left behind
    assert info.id in result.stdout
    sysid, version_num = primary.sql(
        "SELECT system_identifier::text, current_setting('server_version_num')::int FROM pg_control_system()"
    )[0]
    assert info.system_identifier == sysid
    assert info.server_version_num == version_num
    assert info.timeline == 1
    assert info.superuser == "postgres" and info.next_xid is not None
    assert info.start_wal_file == primary.sql("SELECT pg_walfile_name(%s::pg_lsn)", (info.start_lsn,))[0][0]
    assert info.start_datetime <= info.stop_datetime
    on_disk = {p.name: p.stat().st_size for p in info.path.iterdir() if p.name != METADATA_FILE}
    assert info.files == on_disk
    assert info.size_bytes == sum(on_disk.values())
    assert json.loads((info.path / METADATA_FILE).read_text())["stop_lsn"] == info.stop_lsn
    if primary.major >= 18:
        assert info.verified_with.startswith("pg_verifybackup")
    else:
        assert info.compression == "server-lz4" and "base.tar.lz4" in info.files
        assert info.verified_with == "manifest checksum and tar member sizes"

    assert pushgateway.samples("pgtool_basebackup_size_bytes", job="pgtool-basebackup") == [info.size_bytes]
    assert pushgateway.samples("pgtool_basebackup_kept_count", job="pgtool-basebackup") == [1]
    assert pushgateway.samples("pgtool_last_run_success", job="pgtool-basebackup") == [1]


def test_damaged_backups_fail_the_check(primary: ArchivingPrimary, work_dir: Path) -> None:
    primary.basebackup("--compress", "gzip")
    info = list_base_backups(primary.base_dir)[0]
    assert {"base.tar.gz", "pg_wal.tar.gz"} <= set(info.files)
    tools = for_server(primary.major)
    base_verify.check_backup(info.path, tools)  # intact: passes

    manifest = info.path / "backup_manifest"
    text = manifest.read_text()
    damaged = text.replace('"Path": "backup_label"', '"Path": "backup_labeX"', 1)
    assert damaged != text
    manifest.write_text(damaged)
    with pytest.raises(OperationError, match="manifest checksum mismatch"):
        base_verify.check_backup(info.path, tools)
    manifest.write_text(text)

    os.truncate(info.path / "base.tar.gz", info.files["base.tar.gz"] // 2)
    with pytest.raises(OperationError, match=r"damaged|not a readable"):
        base_verify.check_backup(info.path, tools)

    # recover stops at the damage and leaves no half-unpacked copy behind.
    failed = recover(primary, work_dir / "copy")
    assert failed.returncode == 1 and "damaged" in failed.stderr
    assert not (work_dir / "copy").exists()


def test_bad_options_and_failures_are_one_line(primary: ArchivingPrimary, work_dir: Path) -> None:
    dest = work_dir / "dest"
    bad_keep = run_pgtool("basebackup", "--dsn", primary.dsn(), "--dest", str(dest), "--keep", "0")
    assert bad_keep.returncode == 2 and "--keep must be at least 1" in bad_keep.stderr
    bad_compress = run_pgtool("basebackup", "--dsn", primary.dsn(), "--dest", str(dest), "--compress", "rar")
    assert bad_compress.returncode == 2 and "Invalid value for '--compress'" in bad_compress.stderr
    unreachable = run_pgtool("basebackup", "--dsn", "host=127.0.0.1 port=1 user=x", "--dest", str(dest))
    assert unreachable.returncode == 3 and "Traceback" not in unreachable.stderr

    # A run that overlaps another one (holding the lock) refuses, and writes nothing.
    dest.mkdir(exist_ok=True)
    with open(dest / LOCK_FILE, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        busy = run_pgtool("basebackup", "--dsn", primary.dsn(), "--dest", str(dest))
    assert busy.returncode == 1 and "another pgtool basebackup is running" in busy.stderr
    assert [p.name for p in dest.iterdir()] == [LOCK_FILE]

    # Another cluster's backups in DEST, or another cluster's archive: retention would destroy them.
    primary.basebackup()
    foreign = primary.base_dir.rename(work_dir / "foreign")
    info_file = next(foreign.glob(f"*/{METADATA_FILE}"))
    info_file.write_text(
        info_file.read_text().replace('"system_identifier": "', '"system_identifier": "1', 1)
    )
    mixed = run_pgtool("basebackup", "--dsn", primary.dsn(), "--dest", str(foreign))
    assert mixed.returncode == 2 and "holds base backups of another database system" in mixed.stderr
    (primary.archive_dir / ".pgtool-system-identifier").write_text("42\n")
    wrong_archive = run_pgtool(
        "basebackup", "--dsn", primary.dsn(), "--dest", str(dest), "--archive-dir", str(primary.archive_dir)
    )
    assert wrong_archive.returncode == 2 and "belongs to database system 42" in wrong_archive.stderr


@pytest.mark.all_versions
def test_retention_and_wal_pruning_keep_exactly_what_is_needed(
    zstd_primary: ArchivingPrimary, work_dir: Path, pushgateway
) -> None:
    primary = zstd_primary  # a compressed archive: pruning and recovery must read NAME.zst
    archive = primary.archive_dir
    # (A timeline forked from 1 at a point this primary never reaches: not a failover it missed.)
    (archive / "00000009.history").write_text("1\tF0/9000000\tno recovery target specified\n")
    # Leftovers that retention must neither count nor delete.
    (primary.base_dir / ".incomplete-20200101T000000Z-1").mkdir(parents=True)
    (primary.base_dir / "20200101T000000Z").mkdir()

    primary.sql("CREATE TABLE t (i int PRIMARY KEY)")
    ids = []
    pruned = 0
    for batch in range(3):
        primary.sql(
            "INSERT INTO t SELECT generate_series(%s::int, %s::int)", (batch * 100 + 1, batch * 100 + 100)
        )
        primary.switch_wal()
        # lz4 (auto), then zstd (PostgreSQL 15; the embedded 18 has no server zstd), then client gzip
        compress = ["auto", "server-zstd" if primary.major == 15 else "none", "gzip"][batch]
        before = {i.segment for i in list_archive(archive) if i.kind == "segment"}
        primary.basebackup(
            "--keep",
            "2",
            "--archive-dir",
            str(archive),
            "--compress",
            compress,
            "--pushgateway",
            pushgateway.url,
        )
        pruned = len(before - {i.segment for i in list_archive(archive) if i.kind == "segment"})
        ids.append(list_base_backups(primary.base_dir)[-1].id)
        primary.switch_wal()
    primary.sql("INSERT INTO t SELECT generate_series(1001, 1100)")
    primary.switch_wal()

    kept = list_base_backups(primary.base_dir)
    assert [b.id for b in kept] == ids[1:]  # the oldest went; newest two kept
    assert pruned > 0
    assert pushgateway.samples("pgtool_basebackup_wal_segments_pruned", job="pgtool-basebackup") == [pruned]
    assert pushgateway.samples("pgtool_basebackup_kept_count", job="pgtool-basebackup") == [2]
    assert (primary.base_dir / ".incomplete-20200101T000000Z-1").is_dir()
    assert (primary.base_dir / "20200101T000000Z").is_dir()

    oldest = kept[0]
    items = list_archive(archive)
    segments = sorted(i.segment for i in items if i.kind == "segment")
    assert all(i.name.endswith(".zst") for i in items if i.kind == "segment")
    assert segments[0] == oldest.start_wal_file  # nothing older survived ...
    tli, first = parse_segment_name(segments[0])
    _, last = parse_segment_name(segments[-1])
    assert segments == [segment_name(tli, n) for n in range(first, last + 1)]  # ... and nothing needed went
    assert all(i.segment >= oldest.start_wal_file for i in items if i.kind == "backup")
    assert (archive / "00000009.history").exists()  # history files are never pruned

    # Recovery from the oldest kept backup still works after pruning, to the end of the archive.
    pgdata = work_dir / "restored"
    result = recover(primary, pgdata, "--backup", oldest.id)
    assert result.returncode == 0, result.stderr
    copy = adopt(primary.major, pgdata)
    try:
        copy.start()
        copy.wait_until_ready(120, primary=True)
        with copy.connect(pin="off") as conn:
            assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 400
    finally:
        copy.cleanup()


def test_a_replication_only_role_with_a_password_suffices(primary: ArchivingPrimary) -> None:
    secret = "s3cr:et pass"
    with primary.cluster.connect(pin="off") as conn:
        conn.execute(
            sql.SQL("CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD {}").format(sql.Literal(secret))
        )
    # Replication with a password only; ordinary connections refused (as pg_hba often has it).
    primary.cluster.set_hba(
        [
            "host replication replicator 127.0.0.1/32 scram-sha-256",
            "host all replicator 127.0.0.1/32 reject",
            "local all all trust",
            "host all all 127.0.0.1/32 trust",
            "local replication all trust",
        ]
    )
    primary.cluster.reload()
    dsn = f"host=127.0.0.1 port={primary.cluster.port} user=replicator password='{secret}'"
    result = run_pgtool("basebackup", "--dsn", dsn, "--dest", str(primary.base_dir))
    assert result.returncode == 0, result.stderr
    assert secret not in result.stderr and secret not in result.stdout
    info = list_base_backups(primary.base_dir)[0]
    assert info.next_xid is None and info.superuser is None  # no ordinary connection: local clock used
    assert "using the local clock" in result.stderr
    wrong = run_pgtool("basebackup", "--dsn", dsn.replace("s3cr", "wrong"), "--dest", str(primary.base_dir))
    assert wrong.returncode == 3 and "password authentication failed" in wrong.stderr
