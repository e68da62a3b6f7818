"""Reading `.tar.lz4` base backup files (pg_basebackup --compress lz4) through the lz4 library: no process."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import lz4.frame
import pytest

from pgtool.errors import OperationError
from pgtool.physical.tar_stream import extract, member_sizes, read_member


def make_tar_lz4(path: Path) -> dict[str, bytes]:
    files = {"backup_label": b"START WAL LOCATION: 0/2000028\n", "base/1/1259": os.urandom(300_000) * 3}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    # two frames, as a concatenating writer would produce: both must be read. With a content checksum
    # (as the lz4 command writes), so a flipped bit in a stored block is detected.
    data = raw.getvalue()
    half = len(data) // 2
    frames = [lz4.frame.compress(part, content_checksum=True) for part in (data[:half], data[half:])]
    path.write_bytes(b"".join(frames))
    return files


def test_lz4_tar_is_read_and_unpacked_without_the_lz4_command(tmp_path, monkeypatch) -> None:
    archive = tmp_path / "base.tar.lz4"
    files = make_tar_lz4(archive)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no lz4 binary to be found
    assert member_sizes(archive) == {name: len(data) for name, data in files.items()}
    assert read_member(archive, "backup_label") == files["backup_label"]
    dest = tmp_path / "out"
    dest.mkdir()
    assert extract(archive, dest) == sum(len(d) for d in files.values())
    assert (dest / "base/1/1259").read_bytes() == files["base/1/1259"]


@pytest.mark.parametrize("damage", ["truncate", "flip", "not-lz4"])
def test_damaged_lz4_tar_is_one_clear_error(tmp_path, damage) -> None:
    archive = tmp_path / "base.tar.lz4"
    make_tar_lz4(archive)
    data = bytearray(archive.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 3]
    elif damage == "flip":
        data[len(data) // 3] ^= 0xFF
    else:
        data = bytearray(b"plain bytes, no lz4 frame" * 100)
    archive.write_bytes(bytes(data))
    with pytest.raises(OperationError, match="damaged"):
        member_sizes(archive)
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(OperationError, match="damaged"):
        extract(archive, dest)
