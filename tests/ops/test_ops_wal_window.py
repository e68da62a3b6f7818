"""The WAL chain logic of `pgtool status` on archive directories laid out by hand (file names only).

The end-to-end cases (a real archive, a real base backup, a segment deleted) are in test_ops_status.py;
these cover timelines, which a single test cluster does not produce quickly.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from basebackup_fakes import fake_base_backup
from pgtool.errors import OperationError
from pgtool.physical.base_catalog import BaseBackupInfo, list_base_backups
from pgtool.recovery.archive_continuity import check_continuity
from pgtool.status.model import Thresholds
from pgtool.status.wal_window import base_backups_section
from pgtool.wal.listing import segment_name

HISTORY_TL2 = "1\t0/5000000\tno recovery target specified\n"  # timeline 2 began in segment 5


def _archive(tmp_path: Path, segments: list[tuple[int, int]], history: bool = True) -> Path:
    archive = tmp_path / "wal"
    archive.mkdir()
    for tli, segno in segments:
        (archive / segment_name(tli, segno)).write_bytes(b"")
    if history:
        (archive / "00000002.history").write_text(HISTORY_TL2)
    (archive / ".tmp-junk").write_bytes(b"")  # temporaries are ignored
    return archive


def test_timeline_switch_without_gaps(tmp_path):
    archive = _archive(tmp_path, [(1, 3), (1, 4), (1, 5), (2, 5), (2, 6), (2, 7)])
    section = base_backups_section(None, archive, Thresholds())
    assert section.data["missing_segments"] == []
    assert section.data["newest_wal"] == segment_name(2, 7)
    assert section.data["timeline"] == 2
    assert not section.problems


def test_switch_segment_of_the_new_timeline_is_required(tmp_path):
    # Recovery reads segment 5 from timeline 2 (the newest timeline begun by then), not timeline 1's copy.
    archive = _archive(tmp_path, [(1, 3), (1, 4), (1, 5), (2, 6), (2, 7)])
    section = base_backups_section(None, archive, Thresholds())
    assert section.data["missing_segments"] == [segment_name(2, 5)]
    assert any(segment_name(2, 5) in p.message for p in section.problems)


def test_missing_history_file_is_a_problem(tmp_path):
    archive = _archive(tmp_path, [(1, 3), (2, 5), (2, 6)], history=False)
    section = base_backups_section(None, archive, Thresholds())
    assert any("00000002.history is missing" in p.message for p in section.problems)


def test_compressed_segments_count(tmp_path):
    archive = tmp_path / "wal"
    archive.mkdir()
    for segno in (1, 2, 3):
        (archive / (segment_name(1, segno) + ".zst")).write_bytes(b"")
    section = base_backups_section(None, archive, Thresholds())
    assert section.data["missing_segments"] == []
    assert section.data["segments"] == 3


def test_empty_archive_and_missing_directories(tmp_path):
    (tmp_path / "wal").mkdir()
    empty = base_backups_section(tmp_path / "nobase", tmp_path / "wal", Thresholds())
    messages = [p.message for p in empty.problems]
    assert any("does not exist" in m for m in messages)
    assert any("holds no segments" in m for m in messages)


def _fake_backup(base_dir: Path, stamp: str, timeline: int, segno: int) -> BaseBackupInfo:
    """A recorded base backup starting and ending inside segment `segno` (metadata only)."""
    info = fake_base_backup(base_dir, stamp, timeline, segno)
    assert list_base_backups(base_dir)[-1].id == stamp
    return info


def test_status_and_recover_answer_alike_across_a_timeline_switch_and_a_gap(tmp_path):
    # Timeline 2 began in segment 5, timeline 3 in segment 7 (just promoted: none of its WAL archived
    # yet, while timeline 2's segment 7 holds WAL written past the fork). Segment 4 is lost.
    archive = _archive(tmp_path, [(1, 3), (2, 5), (2, 6), (2, 7)])
    (archive / "00000003.history").write_text(HISTORY_TL2 + "2\t0/7000000\tno recovery target specified\n")
    base = tmp_path / "base"
    before_gap = _fake_backup(base, "20260101T000000Z", 1, 3)
    after_gap = _fake_backup(base, "20260101T010000Z", 2, 5)

    section = base_backups_section(base, archive, Thresholds())
    with pytest.raises(OperationError, match="has a gap") as gap:
        check_continuity(archive, before_gap)
    continuity = check_continuity(archive, after_gap)

    # One model: the same recovery timeline, the same end of the archive, the same missing segment.
    assert section.data["timeline"] == continuity.timeline == 3
    assert section.data["newest_wal"] == continuity.last_segment == segment_name(2, 6)
    assert section.data["missing_segments"] == [segment_name(1, 4)]
    assert f"segment {segment_name(1, 4)} is missing" in str(gap.value)


def test_an_incremental_whose_chain_lost_a_member_gives_no_window(tmp_path):
    """status asks the chain the way recover does: an incremental without its full backup is a problem,
    and the window starts at the backups that still restore."""
    base = tmp_path / "base"
    full = fake_base_backup(base, "20260101T000000Z", 1, 3)
    incremental = fake_base_backup(base, "20260102T000000Z", 1, 4)
    incremental.parent, incremental.chain = full.id, [full.id]
    (base / incremental.id / "pgtool-basebackup.json").write_text(incremental.to_json())
    archive = _archive(tmp_path, [(1, 3), (1, 4), (1, 5)], history=False)
    whole = base_backups_section(base, archive, Thresholds(max_base_age=10**10))
    assert not [p for p in whole.problems if "chain" in p.message]
    assert whole.data["newest"] == incremental.id
    for entry in (base / full.id).iterdir():
        entry.unlink()
    (base / full.id).rmdir()
    broken = base_backups_section(base, archive, Thresholds(max_base_age=10**10))
    assert any(f"needs {full.id}, which is missing" in p.message for p in broken.problems)
    assert "newest" not in broken.data  # no backup left that restores
