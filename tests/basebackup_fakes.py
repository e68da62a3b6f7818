"""A recorded base backup without any data (metadata and manifest only), for tests of the archive model,
status's recovery window and retention, which read nothing else of a backup."""

from __future__ import annotations

from pathlib import Path

from pgtool.physical.base_catalog import MANIFEST_FILE, METADATA_FILE, BaseBackupInfo
from pgtool.wal.names import segment_name

SEGMENT_SIZE = 16 * 1024 * 1024


def fake_base_backup(
    base_dir: Path,
    stamp: str,
    timeline: int,
    segno: int,
    *,
    segment_size: int = SEGMENT_SIZE,
    system_identifier: str = "1",
) -> BaseBackupInfo:
    """`base_dir/stamp`, a backup starting and ending in segment `segno` of `timeline`; its record."""
    lsn = f"0/{segno * segment_size + 0x28:X}"
    info = BaseBackupInfo(
        id=stamp, start_time="2026-01-01T00:00:00+00:00", stop_time="2026-01-01T00:01:00+00:00",
        start_lsn=lsn, stop_lsn=lsn, start_wal_file=segment_name(timeline, segno),
        stop_wal_file=segment_name(timeline, segno), timeline=timeline,
        system_identifier=system_identifier, server_version="15.0", server_version_num=150000,
        wal_segment_size=segment_size, compression="none", wal_method="stream", size_bytes=0,
    )  # fmt: skip
    directory = base_dir / stamp
    directory.mkdir(parents=True)
    (directory / METADATA_FILE).write_text(info.to_json())
    (directory / MANIFEST_FILE).write_text("{}")
    return info
