"""Helpers for the physical-backup tests: an archiving primary, WAL switches, recovered copies."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgharness import binaries_for, pgtool_argv, retry, run_pgtool, start_cluster
from pgtool.pg.cluster import LocalCluster
from pgtool.pg.privileges import make_server_dir
from pgtool.recovery.recovery_config import control_minimums


def archive_command(archive_dir: Path, compress: str | None = None) -> str:
    """The archive_command of the issue: the installed pgtool console script."""
    exe = shlex.quote(pgtool_argv()[0])
    extra = f" --compress {compress}" if compress else ""
    return f"{exe} archive-wal %p %f --archive-dir {shlex.quote(str(archive_dir))}{extra}"


@dataclass
class ArchivingPrimary:
    cluster: Any
    archive_dir: Path
    base_dir: Path
    work_dir: Path

    @property
    def major(self) -> int:
        return int(self.cluster.binaries.major)

    def dsn(self, dbname: str = "postgres") -> str:
        return str(self.cluster.dsn(dbname))

    def sql(self, query: str, params: Any = None, dbname: str = "postgres") -> list[tuple[Any, ...]]:
        with self.cluster.connect(dbname, pin="off") as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def switch_wal(self) -> str:
        """Close the current segment and wait until the archiver stored it; returns its name."""
        self.sql("CREATE TABLE IF NOT EXISTS pgtool_switch_filler (x int)")
        self.sql("INSERT INTO pgtool_switch_filler VALUES (1)")  # a switch needs WAL since the last one
        name = self.sql("SELECT pg_walfile_name(pg_switch_wal())")[0][0]

        def archived() -> bool:
            row = self.sql("SELECT last_archived_wal, last_failed_wal FROM pg_stat_archiver")[0]
            return row[0] is not None and row[0] >= name

        retry(archived, timeout=60)
        return str(name)

    def basebackup(self, *args: str) -> Any:
        result = run_pgtool("basebackup", "--dsn", self.dsn(), "--dest", str(self.base_dir), *args)
        assert result.returncode == 0, result.stderr
        return result

    def cleanup(self) -> None:
        self.cluster.cleanup()


def start_archiving_primary(major: int, work_dir: Path, compress: str | None = None) -> ArchivingPrimary:
    archive_dir = make_server_dir(work_dir / "archive", 0o777)
    base_dir = work_dir / "base"
    cluster = start_cluster(
        major,
        settings={
            "archive_mode": "on",
            "archive_command": archive_command(archive_dir, compress),
            "wal_level": "replica",
        },
    )
    return ArchivingPrimary(cluster=cluster, archive_dir=archive_dir, base_dir=base_dir, work_dir=work_dir)


def adopt(major: int, pgdata: Path) -> LocalCluster:
    """A LocalCluster for the recovered copy in `pgdata` (not started), with the primary's minimums."""
    tools = binaries_for(major)
    minimums = control_minimums(tools.path("pg_controldata"), pgdata)
    return LocalCluster(tools, pgdata.parent, data_dir=pgdata, settings=minimums)


def recover(primary: ArchivingPrimary, pgdata: Path, *args: str) -> Any:
    return run_pgtool(
        "recover",
        "--base-dir",
        str(primary.base_dir),
        "--archive-dir",
        str(primary.archive_dir),
        "--pgdata",
        str(pgdata),
        *args,
    )


def fake_backup(base_dir: Path, stamp: str, timeline: int, segno: int) -> Any:
    """A recorded base backup (metadata and manifest only) starting and ending in segment `segno`."""
    from basebackup_fakes import fake_base_backup

    return fake_base_backup(base_dir, stamp, timeline, segno)
