"""Helpers for the status/top tests: an archiving cluster with a real base backup, dump layouts."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pgharness import pgtool_argv, retry, rmtree, server_writable_dir, start_cluster
from pgtool.logical.dump_manifest import checksum_line, sha256_file, write_manifest
from pgtool.logical.dumps import checksum_path, database_dir, dump_name, format_stamp, manifest_path
from pgtool.pg.privileges import give_to_server
from pgtool.physical.base_catalog import METADATA_FILE, BaseBackupInfo


@dataclass
class ArchivingSetup:
    cluster: Any
    archive_dir: Path
    base_dir: Path
    backup_dir: Path

    @property
    def dsn(self) -> str:
        return self.cluster.dsn()


def switch_and_wait(cluster: Any, times: int = 1) -> str:
    """Write something, switch WAL `times` times, wait until the last segment is archived."""
    name = ""
    with cluster.connect(autocommit=True) as conn:
        for _ in range(times):
            conn.execute("CREATE TABLE IF NOT EXISTS ops_filler (x int)")
            conn.execute("INSERT INTO ops_filler SELECT generate_series(1, 100)")
            name = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]

    def archived() -> bool:
        with cluster.connect(autocommit=True) as conn:
            last = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()[0]
        return last is not None and last >= name

    retry(archived, timeout=60)
    return name


def take_base_backup(cluster: Any, base_dir: Path, when: datetime | None = None) -> BaseBackupInfo:
    """A real pg_basebackup (tar, WAL streamed) in base_catalog's layout, with its metadata file."""
    when = when or datetime.now(UTC)
    stamp = when.strftime("%Y%m%dT%H%M%SZ")
    target = base_dir / stamp
    target.mkdir(parents=True)
    subprocess.run(
        [
            cluster.binaries.path("pg_basebackup"),
            "-d",
            cluster.dsn(),
            "-D",
            str(target),
            "-Ft",
            "-X",
            "stream",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
    )
    with tarfile.open(target / "base.tar") as tar:
        member = tar.extractfile("backup_label")
        assert member is not None
        label = member.read().decode()
    start_lsn = label.split("START WAL LOCATION: ")[1].split()[0]
    start_file = label.split("(file ")[1].split(")")[0]
    manifest = json.loads((target / "backup_manifest").read_text())
    wal_range = manifest["WAL-Ranges"][-1]
    with cluster.connect() as conn:
        stop_file = conn.execute("SELECT pg_walfile_name(%s::pg_lsn)", (wal_range["End-LSN"],)).fetchone()[0]
        version, version_num, sysid = conn.execute(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int,"
            " (SELECT system_identifier::text FROM pg_control_system())"
        ).fetchone()
    info = BaseBackupInfo(
        id=stamp,
        start_time=when.isoformat(),
        stop_time=when.isoformat(),
        start_lsn=start_lsn,
        stop_lsn=wal_range["End-LSN"],
        start_wal_file=start_file,
        stop_wal_file=stop_file,
        timeline=int(wal_range["Timeline"]),
        system_identifier=sysid,
        server_version=version,
        server_version_num=version_num,
        wal_segment_size=16 * 1024 * 1024,
        compression="none",
        wal_method="stream",
        size_bytes=sum(p.stat().st_size for p in target.iterdir()),
    )
    (target / METADATA_FILE).write_text(info.to_json())
    return info


def write_dump(backup_dir: Path, database: str, when: datetime, *, checksum: bool = True) -> Path:
    """A dump in pgtool backup's layout (dump, .sha256, manifest) finished at `when`."""
    stamp = format_stamp(when)
    db_dir = database_dir(backup_dir, database)
    db_dir.mkdir(parents=True, exist_ok=True)
    dump = db_dir / dump_name(database, stamp)
    dump.write_bytes(b"PGDMP not a real dump: status reads names and manifests only\n")
    if checksum:
        checksum_path(dump).write_text(checksum_line(sha256_file(dump), dump.name))
    write_manifest(
        manifest_path(dump),
        {
            "database": database,
            "dump_file": dump.name,
            "stamp": stamp,
            "started_at": when.isoformat(),
            "finished_at": when.isoformat(),
            "tables": [],
        },
    )
    return dump


def fresh_dumps(backup_dir: Path, databases: list[str]) -> None:
    for db in databases:
        write_dump(backup_dir, db, datetime.now(UTC) - timedelta(hours=1))


def archiving_setup() -> Iterator[ArchivingSetup]:
    """A PostgreSQL 15 cluster archiving with pgtool archive-wal, one real base backup, WAL after it.

    (archive-wal, not cp: status claims a window only over WAL whose checksum records it verified.)
    """
    root = server_writable_dir("pgtool-ops-")
    archive_dir = root / "wal"
    archive_dir.mkdir()
    archive_dir.chmod(0o777)
    give_to_server(archive_dir)
    cluster = start_cluster(
        15,
        settings={
            "archive_mode": "on",
            "archive_command": f"{pgtool_argv()[0]} archive-wal %p %f --archive-dir {archive_dir}",
        },
    )
    try:
        switch_and_wait(cluster)
        base_dir = root / "base"
        take_base_backup(cluster, base_dir, datetime.now(UTC) - timedelta(hours=2))
        switch_and_wait(cluster, times=3)
        backup_dir = root / "dumps"
        fresh_dumps(backup_dir, ["postgres"])
        yield ArchivingSetup(cluster, archive_dir, base_dir, backup_dir)
    finally:
        cluster.cleanup()
        rmtree(root)


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def status_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout)


def areas(document: dict[str, Any]) -> list[str]:
    return [p["area"] for p in document["problems"]]


def wait_for(check: Any, timeout: float = 60) -> Any:
    return retry(check, timeout=timeout)
