"""tar_stream.extract from a stream (`raw`: how recover --repo feeds a repository object through its
verifying reader): every compression pgtool reads from files reads the same from a stream, and the
path-safety rules hold the same."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import lz4.frame
import pytest
import zstandard

from pgtool.errors import OperationError
from pgtool.physical.tar_stream import extract

COMPRESS = {
    "base.tar": lambda b: b,
    "base.tar.gz": gzip.compress,
    "base.tar.lz4": lz4.frame.compress,
    "base.tar.zst": lambda b: zstandard.ZstdCompressor().compress(b),
}


def _tar(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o600
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


class _Chunks(io.RawIOBase):
    """Bytes handed out in small reads, as a store delivers them."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), len(self._data), 4096)
        buffer[:n] = self._data[:n]
        self._data = self._data[n:]
        return n


@pytest.mark.parametrize("name", sorted(COMPRESS))
def test_every_compression_extracts_from_a_stream(name: str, tmp_path: Path) -> None:
    payload = {"PG_VERSION": b"15\n", "base/1/1259": bytes(range(256)) * 1000}
    raw = io.BufferedReader(_Chunks(COMPRESS[name](_tar(payload))))
    written = extract(Path("base/20261206T080000Z") / name, tmp_path, raw=raw)
    assert written == sum(len(v) for v in payload.values())
    assert (tmp_path / "base/1/1259").read_bytes() == payload["base/1/1259"]
    assert not (tmp_path / name).exists()  # `path` only names the stream: nothing read from it


@pytest.mark.parametrize("bad", ["../escape", "/etc/evil"])
def test_unsafe_paths_are_refused_from_a_stream(bad: str, tmp_path: Path) -> None:
    dest = tmp_path / "pgdata"
    dest.mkdir()
    raw = io.BufferedReader(_Chunks(gzip.compress(_tar({bad: b"x"}))))
    with pytest.raises(OperationError, match="unsafe path"):
        extract(Path("base.tar.gz"), dest, raw=raw)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pgdata"] and not any(dest.iterdir())


def test_a_name_twice_is_refused_and_never_writes_through_an_earlier_members_link(tmp_path):
    """A damaged or foreign tar that holds one file twice: with link_same (chain members), the first
    copy equals the earlier member's file and is hard-linked to it; writing the second copy would
    change the earlier member's verified copy through that link. The tar is refused instead."""
    earlier = tmp_path / "member1"
    earlier.mkdir()
    (earlier / "INCREMENTAL.1").write_bytes(b"X" * 100)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for data in (b"X" * 100, b"Y" * 100):
            info = tarfile.TarInfo("INCREMENTAL.1")
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, io.BytesIO(data))
    path = tmp_path / "base.tar"
    path.write_bytes(out.getvalue())
    dest = tmp_path / "member2"
    dest.mkdir()
    with pytest.raises(OperationError, match="twice"):
        extract(path, dest, link_same=earlier)
    assert (earlier / "INCREMENTAL.1").read_bytes() == b"X" * 100
