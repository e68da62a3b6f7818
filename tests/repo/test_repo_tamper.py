"""Tampering and rot, for every kind of object a repository holds, on every backend: one flipped byte,
a truncation, or two objects' contents swapped is an IntegrityError naming the object, never content.

The damage is done behind pgtool's back: on a local repository by editing the file on disk in place
(bit rot), on S3 and Azure by overwriting the stored object with a raw request to the server.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import obstore
import pytest

from pgtool.repo import (
    RECORD,
    IntegrityError,
    Repository,
    base_prefix,
    dump_prefix,
    open_repository,
    wal_name,
)

STAMP = "20261207T060000Z"
# Each kind of object, with a second one of the same kind to swap it with.
KINDS = {
    "wal segment": (wal_name("000000010000000000000010"), wal_name("000000010000000000000011")),
    "history file": (wal_name("00000002.history"), wal_name("00000003.history")),
    "backup label": (
        wal_name("000000010000000000000010.00000028.backup"),
        wal_name("000000010000000000000011.00000028.backup"),
    ),
    "base backup tar": (base_prefix(STAMP) + "base.tar", base_prefix("20261207T070000Z") + "base.tar"),
    "dump": (
        dump_prefix("app db", STAMP) + "app.dump",
        dump_prefix("app db", "20261207T070000Z") + "app.dump",
    ),
    "manifest": (base_prefix(STAMP) + "backup_manifest", dump_prefix("app db", STAMP) + "manifest.json"),
}


def _content(name: str) -> bytes:
    """Content shaped like the real thing: a 4 MiB segment, a 9 MiB tar (more than one multipart part
    and more than one encrypted message), small text files."""
    seed = name.encode()
    if name.startswith("wal/") and name[-1].isdigit() and "." not in name.rsplit("/", 1)[1]:
        return os.urandom(1 << 20) + bytes(3 << 20)
    if name.endswith((".tar", ".dump")):
        return os.urandom(9 << 20) + seed * 1000
    if name.endswith(".history"):
        return b"1\t0/3000000\tno recovery target specified\n" + seed
    return json.dumps({"name": name, "files": [{"path": "base/1/1259", "size": 8192}]}).encode()


def _fill(repo: Repository) -> dict[str, bytes]:
    stored = {}
    for names in KINDS.values():
        for name in names:
            data = stored[name] = _content(name)
            if name.endswith((".tar", ".dump")):
                repo.put_stream(name, iter([data[i : i + (1 << 20)] for i in range(0, len(data), 1 << 20)]))
            else:
                repo.put_if_absent(name, data)
    return stored


class Raw:
    """The stored bytes of a repository, read and damaged without pgtool: the file on disk for a local
    repository (edited in place, as rot would), a raw request to the server for S3 and Azure."""

    def __init__(self, backend, repo: Repository) -> None:
        self.local = Path(backend.url) if backend.kind == "local" else None
        self.store = repo.store.backend

    def get(self, name: str) -> bytes:
        if self.local is not None:
            return (self.local / name).read_bytes()
        return bytes(obstore.get(self.store, name).bytes())

    def put(self, name: str, data: bytes) -> None:
        if self.local is not None:
            with open(self.local / name, "r+b") as f:
                f.write(data)
                f.truncate()
        else:
            obstore.put(self.store, name, data)

    def flip(self, name: str, offset: int, mask: int = 0x01) -> None:
        raw = bytearray(self.get(name))
        raw[offset % len(raw)] ^= mask
        self.put(name, bytes(raw))


def _assert_damaged(repo: Repository, name: str, tmp_path: Path, *, to_file: bool = False) -> None:
    with pytest.raises(IntegrityError) as info:
        repo.read_bytes(name)
    assert repo.where(name) in info.value.one_line()
    if to_file:  # once per kind: the large objects make every read count
        dest = tmp_path / "restored"
        with pytest.raises(IntegrityError):
            repo.read_to_file(name, dest)
        assert list(tmp_path.glob("*restored*")) == []  # nothing restored, not even a temporary file


@pytest.mark.parametrize("keyed", ["plain", "encrypted"])
def test_every_kind_flipped_truncated_swapped(backend, keyed, random_key_file, tmp_path):
    repo = backend.open(key_file=random_key_file if keyed == "encrypted" else None)
    stored = _fill(repo)
    raw = Raw(backend, repo)
    spool = tmp_path / "spool"
    spool.mkdir()
    for kind, (name, other) in KINDS.items():
        original, original_other = raw.get(name), raw.get(other)
        for offset in (0, 5, len(original) // 2, -1):  # magic, flags, body, trailer or final tag
            raw.flip(name, offset)
            _assert_damaged(repo, name, spool, to_file=offset == -1)
            raw.put(name, original)
        assert repo.read_bytes(name) == stored[name], kind  # the restored bytes read again
        for length in (0, 6, len(original) // 2, len(original) - 1):
            raw.put(name, original[:length])
            _assert_damaged(repo, name, spool)
        raw.put(name, original + b"\x00")  # appended
        _assert_damaged(repo, name, spool)
        # swapped: each one valid, but under the other's name
        raw.put(name, original_other)
        raw.put(other, original)
        _assert_damaged(repo, name, spool)
        _assert_damaged(repo, other, spool)
        raw.put(name, original)
        raw.put(other, original_other)
        assert repo.read_bytes(other) == stored[other], kind


@pytest.mark.parametrize("keyed", ["plain", "encrypted"])
def test_the_repository_record_flipped_truncated_swapped(backend, keyed, passphrase_file):
    key_file = passphrase_file if keyed == "encrypted" else None
    repo = backend.open(key_file=key_file)
    repo.put_if_absent(KINDS["manifest"][0], _content(KINDS["manifest"][0]))
    raw = Raw(backend, repo)
    record = raw.get(RECORD)
    damaged = [
        *(_flipped(record, offset) for offset in (0, len(record) // 3, len(record) // 2, -3)),
        record[: len(record) // 2],
        b"",
        raw.get(KINDS["manifest"][0]),  # another object's content under the record's name
    ]
    for data in damaged:
        raw.put(RECORD, data)
        with pytest.raises(IntegrityError, match=r"pgtool\.repo\.json in "):
            open_repository(backend.url, environ=backend.env, key_file=key_file)
    raw.put(RECORD, record)
    assert open_repository(backend.url, environ=backend.env, key_file=key_file).encrypted == bool(key_file)


def _flipped(data: bytes, offset: int) -> bytes:
    raw = bytearray(data)
    raw[offset % len(raw)] ^= 0x01
    return bytes(raw)


@pytest.mark.parametrize("keyed", ["plain", "encrypted"])
def test_every_byte_and_bit_of_small_objects(local_backend, keyed, random_key_file, tmp_path):
    """Exhaustive on the local backend (cheap there): every byte of a history file, a manifest and the
    record, with three different bit masks, is detected; none is ever read as content."""
    key_file = random_key_file if keyed == "encrypted" else None
    repo = local_backend.open(key_file=key_file)
    raw = Raw(local_backend, repo)
    for name in (KINDS["history file"][0], KINDS["manifest"][0]):
        repo.put_if_absent(name, _content(name))
        original = raw.get(name)
        for offset in range(len(original)):
            for mask in (0x01, 0x02, 0x80):
                raw.put(name, _masked(original, offset, mask))
                with pytest.raises(IntegrityError, match=name.replace(".", r"\.")):
                    repo.read_bytes(name)
        raw.put(name, original)
    record = raw.get(RECORD)
    for offset in range(len(record)):
        for mask in (0x01, 0x02, 0x80):
            raw.put(RECORD, _masked(record, offset, mask))
            with pytest.raises(IntegrityError, match=r"pgtool\.repo\.json"):
                open_repository(local_backend.url, environ=local_backend.env, key_file=key_file)


def _masked(data: bytes, offset: int, mask: int) -> bytes:
    raw = bytearray(data)
    raw[offset] ^= mask
    return bytes(raw)
