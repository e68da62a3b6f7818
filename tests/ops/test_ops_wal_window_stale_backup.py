"""status must not claim a recoverable window from a base backup recover refuses: one taken on a
timeline the archive's history says was abandoned (a stale primary after a failover)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from basebackup_fakes import fake_base_backup
from pgtool.errors import PgtoolError
from pgtool.physical.base_catalog import BaseBackupInfo, list_base_backups
from pgtool.recovery.archive_continuity import check_continuity
from pgtool.status.model import Thresholds
from pgtool.status.wal_window import base_backups_section
from pgtool.wal.checksum import write_checksum
from pgtool.wal.listing import segment_name

SEG = 1024 * 1024  # the smallest segment size keeps the files small
MAGIC_PG15 = 0xD110


def _segment(archive: Path, tli: int, segno: int) -> None:
    """A segment whose long page header matches its name, with its checksum record."""
    header = (
        MAGIC_PG15.to_bytes(2, "little")
        + (2).to_bytes(2, "little")  # XLP_LONG_HEADER
        + min(tli, 1 if segno == 5 else tli).to_bytes(4, "little")
        + (segno * SEG).to_bytes(8, "little")
        + bytes(8)
        + (7).to_bytes(8, "little")  # system identifier
        + SEG.to_bytes(4, "little")
        + (8192).to_bytes(4, "little")
    )
    data = header + bytes(SEG - len(header))
    name = segment_name(tli, segno)
    (archive / name).write_bytes(data)
    write_checksum(str(archive), name, hashlib.sha256(data).hexdigest())


def _backup(base_dir: Path, stamp: str, timeline: int, segno: int) -> BaseBackupInfo:
    info = fake_base_backup(base_dir, stamp, timeline, segno, segment_size=SEG, system_identifier="7")
    assert list_base_backups(base_dir)[-1].id == stamp
    return info


def test_backup_of_an_abandoned_timeline_gives_no_window(tmp_path):
    # Timeline 2 began at 0/500000 (failover). The old primary kept running on timeline 1 and was
    # backed up at segment 6. Segment 4 is lost, so only the stale backup lies after the gap.
    archive = tmp_path / "wal"
    archive.mkdir()
    for tli, segno in [(1, 3), (1, 5), (1, 6), (2, 5), (2, 6), (2, 7)]:
        _segment(archive, tli, segno)
    history = b"1\t0/500000\tno recovery target specified\n"
    (archive / "00000002.history").write_bytes(history)
    write_checksum(str(archive), "00000002.history", hashlib.sha256(history).hexdigest())
    base = tmp_path / "base"
    _backup(base, "20260101T000000Z", 1, 3)
    stale = _backup(base, "20260101T010000Z", 1, 6)

    with pytest.raises(PgtoolError):
        check_continuity(archive, stale)  # recover refuses it
    section = base_backups_section(base, archive, Thresholds())

    assert section.data["missing_segments"] == [segment_name(1, 4)]
    assert section.data["window"] is None
    assert any(stale.id in p.message and "cannot be recovered" in p.message for p in section.problems)
