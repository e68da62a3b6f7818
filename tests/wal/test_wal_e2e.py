"""End to end: a real server whose archive_command is `pgtool archive-wal`, and its WAL restored back."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from pgharness import archiver_stats, binaries_for, retry, rmtree, server_writable_dir, switch_segments
from pgtool.pg.cluster import LocalCluster
from pgtool.wal.archive import SYSTEM_ID_FILE, TEMP_PREFIX, list_archive
from pgtool.wal_bundle import server_command

PGTOOL = Path(sys.executable).parent / "pgtool"


@pytest.mark.parametrize("major", [15, 18])
@pytest.mark.parametrize("compress", ["none", "zstd"])
def test_server_archives_through_pgtool_and_counts_failures(major, compress):
    work = server_writable_dir("pgtool-wal-e2e-")
    archive_dir = work / "archive"
    archive_dir.mkdir()
    os.chown(archive_dir, (work.stat().st_uid), (work.stat().st_gid))  # the server user writes it
    command = f"{PGTOOL} archive-wal %p %f --archive-dir {archive_dir} --compress {compress}"
    cluster = LocalCluster(
        binaries_for(major),
        work / "cluster",
        settings={"archive_mode": "on", "archive_command": command, "archive_timeout": "0"},
    )
    try:
        cluster.init().start()
        names = switch_segments(cluster, 3, table="e2e", rows=500)
        retry(lambda: archiver_stats(cluster)[0] >= 3, timeout=60)
        archived = {f.name for f in list_archive(str(archive_dir))}
        assert set(names) <= archived
        assert archiver_stats(cluster)[1] == 0
        with cluster.connect(pin="off") as conn:
            sysid = conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()[0]
        assert int((archive_dir / SYSTEM_ID_FILE).read_text()) == sysid
        suffix = ".zst" if compress == "zstd" else ""
        assert all((archive_dir / (n + suffix)).is_file() for n in names)

        # restore-wal, run as the server user, gives back exactly what the server wrote.
        dest = work / "restored"
        dest.mkdir()
        os.chown(dest, work.stat().st_uid, work.stat().st_gid)
        for name in names:
            subprocess.run(
                [
                    "runuser",
                    "-u",
                    "postgres",
                    "--",
                    *shlex.split(server_command()),  # what the server user can run
                    "restore-wal",
                    name,
                    str(dest / name),
                    "--archive-dir",
                    str(archive_dir),
                ],
                check=True,
                capture_output=True,
                cwd="/",
            )
            pg_wal_copy = cluster.data_dir / "pg_wal" / name
            if pg_wal_copy.exists():  # not yet recycled by a checkpoint
                assert (dest / name).read_bytes() == pg_wal_copy.read_bytes()

        # A broken archive (not writable by the server) makes failures count: exit codes stay < 126.
        os.chown(archive_dir, 0, 0)
        archive_dir.chmod(0o755)
        before = archiver_stats(cluster)
        switch_segments(cluster, 1, table="e2e", rows=500)
        retry(lambda: archiver_stats(cluster)[1] > before[1], timeout=60)
        assert archiver_stats(cluster)[0] == before[0]
        assert not [p for p in archive_dir.iterdir() if p.name.startswith(TEMP_PREFIX)]

        # Repaired: the server catches up on its own.
        os.chown(archive_dir, work.stat().st_uid, work.stat().st_gid)
        retry(lambda: archiver_stats(cluster)[0] > before[0], timeout=120)
    finally:
        cluster.cleanup()
        rmtree(work)


def _count(cluster: LocalCluster) -> int:
    with cluster.connect(pin="off") as conn:
        return conn.execute("SELECT count(*) FROM recovered").fetchone()[0]


@pytest.mark.parametrize("major", [15, 18])
def test_recovery_replays_through_restore_wal_and_stops_on_a_corrupt_segment(major):
    work = server_writable_dir("pgtool-wal-rec-")
    archive_dir = work / "archive"
    archive_dir.mkdir()
    os.chown(archive_dir, work.stat().st_uid, work.stat().st_gid)
    command = f"{PGTOOL} archive-wal %p %f --archive-dir {archive_dir} --compress zstd"
    primary = LocalCluster(
        binaries_for(major), work / "primary", settings={"archive_mode": "on", "archive_command": command}
    )
    restored: list[LocalCluster] = []
    try:
        primary.init().start()
        with primary.connect(pin="off") as conn:
            conn.execute("CREATE TABLE recovered(x int)")
            conn.execute("INSERT INTO recovered SELECT generate_series(1, 100)")
        backup = work / "backup"
        subprocess.run(
            ["runuser", "-u", "postgres", "--", primary.binaries.path("pg_basebackup"), "-h",
             str(primary.socket_dir), "-p", str(primary.port), "-U", "postgres", "-D", str(backup),
             "-X", "none", "-c", "fast"],
            check=True, capture_output=True, cwd="/",
        )  # fmt: skip
        with primary.connect(pin="off") as conn:
            conn.execute("INSERT INTO recovered SELECT generate_series(101, 200)")
            after = conn.execute("SELECT pg_walfile_name(pg_current_wal_insert_lsn())").fetchone()[0]
            conn.execute("SELECT pg_switch_wal()")
        retry(lambda: (archive_dir / f"{after}.zst").exists(), timeout=60)

        def recover(name: str, archive: Path) -> LocalCluster:
            data = work / name
            subprocess.run(["cp", "-a", str(backup), str(data)], check=True)
            (data / "recovery.signal").touch()
            os.chown(data / "recovery.signal", work.stat().st_uid, work.stat().st_gid)
            restore = f"{PGTOOL} restore-wal %f %p --archive-dir {archive}"
            cluster = LocalCluster(
                binaries_for(major),
                work / f"{name}-base",
                data_dir=data,
                settings={"restore_command": restore, "archive_mode": "off"},
            )
            restored.append(cluster)
            return cluster

        # Every archived segment is replayed; the probe for the next one (exit 1) ends recovery normally.
        good = recover("good", archive_dir)
        good.start()
        retry(lambda: _count(good) == 200, timeout=60)
        good.stop()

        # A truncated segment makes restore-wal exit 126: recovery stops instead of promoting early.
        broken_archive = work / "broken-archive"
        subprocess.run(["cp", "-a", str(archive_dir), str(broken_archive)], check=True)
        damaged = broken_archive / f"{after}.zst"
        damaged.write_bytes(damaged.read_bytes()[:-100])
        bad = recover("bad", broken_archive)
        with pytest.raises(Exception):  # noqa: B017 - pg_ctl reports the failed start its own way
            bad.start(timeout=60)
        log = bad.log_file.read_text() if bad.log_file.exists() else ""
        # PostgreSQL words exit code 126 as "command not executable"; pgtool's own line just before says why.
        assert f'could not restore file "{after}" from archive: command not executable' in log, log[-3000:]
        assert "is damaged" in log
        assert (bad.data_dir / "recovery.signal").exists()  # never promoted
    finally:
        for cluster in restored:
            cluster.cleanup()
        primary.cleanup()
        rmtree(work)
