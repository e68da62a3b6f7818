"""A full local spool: reading an object to a file on a filesystem with no room left (a 1 MiB tmpfs,
mounted for the test; the tests run as root) fails with one clear error naming the object and the
destination, and leaves no file behind, least of all a partial one under the destination's name."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pgtool.repo import IntegrityError, ObjectAbsent, RepoError, wal_name

SEGMENT = wal_name("00000001000000000000000B")
BASE = "base/20261207T050000Z/base.tar"


@pytest.fixture
def full_spool(tmp_path: Path):
    spool = tmp_path / "spool"
    spool.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "pgtool-test-spool", str(spool)],
        capture_output=True,
        text=True,
    )
    assert mounted.returncode == 0, f"cannot mount a tmpfs (the tests need root): {mounted.stderr}"
    yield spool
    subprocess.run(["umount", str(spool)], check=True)


def test_reading_into_a_full_spool_fails_clearly_and_leaves_nothing(backend, full_spool):
    repo = backend.open()
    blocks = [os.urandom(1 << 20) for _ in range(4)]
    repo.put_stream(BASE, iter(blocks), compress=False)
    repo.put_if_absent(SEGMENT, os.urandom(3 << 20))
    for name, dest in ((BASE, full_spool / "base.tar"), (SEGMENT, full_spool / "00000001000000000000000B")):
        with pytest.raises(RepoError) as info:
            repo.read_to_file(name, dest)
        assert not isinstance(info.value, (ObjectAbsent, IntegrityError))  # neither "absent" nor "damaged"
        line = info.value.one_line()
        assert name in line and str(dest) in line and "No space left on device" in line, line
        assert list(full_spool.iterdir()) == []  # no temporary file, no partial destination
        assert os.statvfs(full_spool).f_bfree == os.statvfs(full_spool).f_blocks  # the space is back
    # What fits still works, and the object was not harmed by the failed reads.
    small = wal_name("00000001000000000000000C")
    repo.put_if_absent(small, b"fits" * 1000)
    assert repo.read_to_file(small, full_spool / "small") == 4000
    assert repo.read_bytes(BASE) == b"".join(blocks)


def test_a_previous_file_at_the_destination_survives_a_failed_read(local_backend, full_spool):
    """restore-wal may be asked again for a file it wrote before: a failed read must not leave the
    destination truncated."""
    repo = local_backend.open()
    repo.put_if_absent(SEGMENT, os.urandom(2 << 20))
    dest = full_spool / "dest"
    dest.write_bytes(b"earlier complete content")
    with pytest.raises(RepoError, match="No space left on device"):
        repo.read_to_file(SEGMENT, dest)
    assert dest.read_bytes() == b"earlier complete content"
    assert [p.name for p in full_spool.iterdir()] == ["dest"]


def test_a_missing_destination_directory_is_a_clear_error(local_backend, tmp_path):
    repo = local_backend.open()
    repo.put_if_absent(SEGMENT, b"x" * 100)
    with pytest.raises(RepoError, match="No such file or directory") as info:
        repo.read_to_file(SEGMENT, tmp_path / "nowhere" / "seg")
    assert not isinstance(info.value, ObjectAbsent)  # restore-wal must not read this as "absent"
