"""Every archived file carries a SHA-256 record, and restore-wal checks it and the page header."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from walsegments import complete_segment

from pgharness import run_pgtool
from pgtool.wal.archive import SYSTEM_ID_FILE
from pgtool.wal.header import read_long_header
from pgtool.wal.names import parse_wal_name, segment_name


def archive(src, name, archive_dir, *extra):
    return run_pgtool("archive-wal", str(src), name, "--archive-dir", str(archive_dir), *extra)


def restore(name, dest, archive_dir, *extra):
    return run_pgtool("restore-wal", name, str(dest), "--archive-dir", str(archive_dir), *extra)


def event(proc) -> dict:
    return json.loads(proc.stderr.strip().splitlines()[-1])


def record(archive_dir: Path, name: str) -> str:
    return (archive_dir / f"{name}.sha256").read_text()


@pytest.mark.parametrize("compress", ["none", "zstd", "lz4"])
def test_archiving_records_the_content_checksum_before_the_file(segment, archive_dir, work_dir, compress):
    src, name = segment
    assert archive(src, name, archive_dir, "--compress", compress).returncode == 0
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    assert record(archive_dir, name) == f"{digest}  {name}\n"
    # An identical re-archive (PostgreSQL retries after a crash) is still success, in any form.
    assert archive(src, name, archive_dir).returncode == 0
    assert record(archive_dir, name) == f"{digest}  {name}\n"
    dest = work_dir / "restored"
    assert restore(name, dest, archive_dir).returncode == 0
    assert dest.read_bytes() == src.read_bytes()


def test_a_flipped_bit_in_a_plain_segment_is_refused(segment, archive_dir, work_dir):
    src, name = segment
    assert archive(src, name, archive_dir).returncode == 0
    stored = archive_dir / name
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored.chmod(0o644)
    stored.write_bytes(bytes(data))
    dest = work_dir / "restored"
    proc = restore(name, dest, archive_dir)
    assert proc.returncode == 126, proc.stderr
    assert "SHA-256" in event(proc)["error"]
    assert not dest.exists()


def test_a_segment_of_another_cluster_is_refused(pg15, pg18, archive_dir, work_dir):
    src15, _ = complete_segment(pg15, work_dir)
    src18, name18 = complete_segment(pg18, work_dir)
    other = work_dir / "other-archive"
    other.mkdir()
    assert archive(src18, name18, other).returncode == 0
    # This archive belongs to the PG15 cluster; someone copies the PG18 cluster's segment, with its
    # own (correct) checksum record, into it.
    (archive_dir / SYSTEM_ID_FILE).write_text(f"{read_long_header(str(src15)).system_identifier}\n")
    for name in (name18, f"{name18}.sha256"):
        (archive_dir / name).write_bytes((other / name).read_bytes())
    dest = work_dir / "restored"
    proc = restore(name18, dest, archive_dir)
    assert proc.returncode == 126, proc.stderr
    assert "another cluster" in event(proc)["error"]
    assert not dest.exists()


def test_a_segment_stored_under_the_wrong_name_is_refused(segment, archive_dir, work_dir):
    src, name = segment
    assert archive(src, name, archive_dir).returncode == 0
    wal = parse_wal_name(name)
    wrong = segment_name(wal.timeline, wal.segno() + 1)
    (archive_dir / wrong).write_bytes(src.read_bytes())
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    (archive_dir / f"{wrong}.sha256").write_text(f"{digest}  {wrong}\n")  # a consistent record
    dest = work_dir / "restored"
    proc = restore(wrong, dest, archive_dir)
    assert proc.returncode == 126, proc.stderr
    assert "wrong name" in event(proc)["error"]
    assert not dest.exists()


def test_a_file_without_a_record_is_refused_unless_allowed_and_a_re_archive_adopts_it(
    segment, archive_dir, work_dir
):
    src, name = segment
    assert archive(src, name, archive_dir).returncode == 0
    (archive_dir / f"{name}.sha256").unlink()  # as archived by a pgtool without checksums
    dest = work_dir / "restored"
    proc = restore(name, dest, archive_dir)
    assert proc.returncode == 126
    assert "no checksum record" in event(proc)["error"] and "--allow-unverified" in event(proc)["error"]
    assert not dest.exists()
    proc = restore(name, dest, archive_dir, "--allow-unverified")
    assert proc.returncode == 0, proc.stderr
    assert event(proc)["level"] == "warning" and event(proc)["checksum"] == "missing"
    assert dest.read_bytes() == src.read_bytes()
    # PostgreSQL re-archiving the same segment records its checksum after comparing the bytes.
    assert archive(src, name, archive_dir).returncode == 0
    assert (archive_dir / f"{name}.sha256").exists()
    dest.unlink()
    assert restore(name, dest, archive_dir).returncode == 0


def test_history_files_carry_a_record_too(archive_dir, work_dir):
    history = work_dir / "00000002.history"
    history.write_text("1\t0/3000000\tno recovery target specified\n")
    assert archive(history, "00000002.history", archive_dir).returncode == 0
    stored = archive_dir / "00000002.history"
    stored.chmod(0o644)
    stored.write_text("1\t0/2000000\tno recovery target specified\n")
    proc = restore("00000002.history", work_dir / "restored", archive_dir)
    assert proc.returncode == 126
    assert "SHA-256" in event(proc)["error"]
