"""Objects in a repository on every backend (local, moto's S3 server, Azurite): round trips, the
conditional create that archive-wal relies on, multipart visibility, and tamper detection."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import obstore
import pytest

from pgtool.repo import IntegrityError, ObjectAbsent, ObjectDiffers, wal_name

SEGMENT = wal_name("000000010000000000000003")


def _segment_bytes(seed: bytes) -> bytes:
    # 16 MiB like a real segment: a compressible page pattern with a little entropy.
    page = hashlib.sha256(seed).digest() * 256
    return page * (16 * 1024 * 1024 // len(page))


@pytest.mark.parametrize("keyed", ["plain", "passphrase", "random"])
def test_round_trip_small_and_streamed(backend, keyed, passphrase_file, random_key_file, tmp_path):
    key_file = {"plain": None, "passphrase": passphrase_file, "random": random_key_file}[keyed]
    repo = backend.open(key_file=key_file)
    assert repo.encrypted == (key_file is not None)
    data = _segment_bytes(b"one")
    assert repo.put_if_absent(SEGMENT, data) is True
    assert repo.read_bytes(SEGMENT) == data

    # A streamed object larger than several multipart parts, content incompressible.
    blocks = [os.urandom(1024 * 1024) for _ in range(20)]
    assert repo.put_stream("base/20261206T010000Z/base.tar", iter(blocks), compress=False) == 20 * 1024 * 1024
    dest = tmp_path / "restored.tar"
    assert repo.read_to_file("base/20261206T010000Z/base.tar", dest) == 20 * 1024 * 1024
    assert dest.read_bytes() == b"".join(blocks)
    assert oct(dest.stat().st_mode & 0o777) == "0o600"

    names = [info.name for info in repo.list("")]
    assert names == ["base/20261206T010000Z/base.tar", "pgtool.repo.json", SEGMENT]
    assert [info.name for info in repo.list("wal/00000001")] == [SEGMENT]
    assert repo.exists(SEGMENT) and not repo.exists(wal_name("000000010000000000000004"))
    with pytest.raises(ObjectAbsent, match="000000010000000000000004"):
        repo.read_bytes(wal_name("000000010000000000000004"))
    repo.delete(SEGMENT)
    repo.delete(SEGMENT)  # absent already: not an error (retention may race another run)
    assert not repo.exists(SEGMENT)

    # Reopening needs nothing but the URL, the environment and the same key.
    again = backend.open(key_file=key_file, create=False)
    assert again.read_bytes("base/20261206T010000Z/base.tar") == b"".join(blocks)


def test_encrypted_objects_hold_no_cleartext(backend, passphrase_file):
    repo = backend.open(key_file=passphrase_file)
    secret = b"TOP-SECRET-ROW-" * 1000
    repo.put_if_absent(SEGMENT, secret, compress=False)
    stored = obstore.get(repo.store.backend, SEGMENT).bytes()
    assert b"TOP-SECRET-ROW-" not in bytes(stored)
    record = bytes(obstore.get(repo.store.backend, "pgtool.repo.json").bytes())
    assert b"argon2id" in record and b"correct horse" not in record


def test_conditional_create_identical_ok_differing_refused(backend):
    repo = backend.open()
    data = _segment_bytes(b"a")
    assert repo.put_if_absent(SEGMENT, data) is True
    assert repo.put_if_absent(SEGMENT, data) is False  # archiving the same segment twice succeeds
    with pytest.raises(ObjectDiffers, match=SEGMENT):
        repo.put_if_absent(SEGMENT, _segment_bytes(b"b"))
    assert repo.read_bytes(SEGMENT) == data  # never overwritten


def test_concurrent_creators_exactly_one_wins(backend, random_key_file):
    backend.open(key_file=random_key_file)  # create the repository once
    writers = 6
    barrier = threading.Barrier(writers)
    results: dict[int, object] = {}

    def write(i: int) -> None:
        repo = backend.open(key_file=random_key_file, create=False)
        payload = _segment_bytes(bytes([i]))
        barrier.wait()
        try:
            results[i] = repo.put_if_absent(SEGMENT, payload)
        except ObjectDiffers as exc:
            results[i] = exc

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [i for i, r in results.items() if r is True]
    assert len(winners) == 1, results
    assert all(isinstance(r, ObjectDiffers) for i, r in results.items() if i != winners[0]), results
    repo = backend.open(key_file=random_key_file, create=False)
    assert repo.read_bytes(SEGMENT) == _segment_bytes(bytes([winners[0]]))


_KILLED_WRITER = textwrap.dedent(
    """
    import os, sys, time
    from pgtool.repo import open_repository
    repo = open_repository(sys.argv[1], create=False)

    def blocks():
        for _ in range(24):
            yield os.urandom(1024 * 1024)
        open(sys.argv[2], "w").close()
        time.sleep(600)
        yield b"never"

    repo.put_stream("base/20261206T020000Z/base.tar", blocks(), compress=False)
    """
)


def test_killed_multipart_upload_leaves_nothing_visible(backend, tmp_path):
    repo = backend.open()
    marker = tmp_path / "parts-sent"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, backend.url, str(marker)],
        env=backend.env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, "the writer died before sending its parts"
            assert time.monotonic() < deadline, "the writer never sent its parts"
            time.sleep(0.05)
        # Wait until the store holds parts of the upload: the point is a partly uploaded object.
        while not _upload_in_progress(backend, "base/20261206T020000Z/base.tar"):
            assert proc.poll() is None and time.monotonic() < deadline, "no partial upload seen"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not repo.exists("base/20261206T020000Z/base.tar")
    assert repo.list("base") == []
    with pytest.raises(ObjectAbsent):
        repo.read_bytes("base/20261206T020000Z/base.tar")


def _upload_in_progress(backend, name: str) -> bool:
    if backend.server is None:
        return any(Path(backend.url).glob(f"{name}#*"))  # object_store's local staging file
    bucket, _, prefix = backend.url.split("://", 1)[1].partition("/")
    return backend.server.upload_in_progress(bucket, f"{prefix}/{name}")


def _flip(repo, name: str, offset: int) -> None:
    raw = bytearray(bytes(obstore.get(repo.store.backend, name).bytes()))
    raw[offset % len(raw)] ^= 0x01
    obstore.put(repo.store.backend, name, bytes(raw))


@pytest.mark.parametrize("keyed", [False, True])
@pytest.mark.parametrize("where", ["header", "body", "end"])
def test_one_flipped_byte_is_detected_naming_the_object(backend, keyed, where, random_key_file):
    repo = backend.open(key_file=random_key_file if keyed else None)
    repo.put_if_absent(SEGMENT, _segment_bytes(b"t"))
    repo.put_stream("dumps/app/20261206T030000Z/app.dump", iter([os.urandom(3 * 1024 * 1024)]))
    for name in (SEGMENT, "dumps/app/20261206T030000Z/app.dump"):
        size = len(bytes(obstore.get(repo.store.backend, name).bytes()))
        _flip(repo, name, {"header": 5, "body": size // 2, "end": size - 1}[where])
        with pytest.raises(IntegrityError, match=name.replace(".", r"\.")):
            repo.read_bytes(name)
        with pytest.raises(IntegrityError):
            repo.read_to_file(name, Path(backend.env.get("TMPDIR", "/tmp")) / f"never-{os.getpid()}")
        assert not list(Path(backend.env.get("TMPDIR", "/tmp")).glob(f"*never-{os.getpid()}*"))


@pytest.mark.parametrize("keyed", [False, True])
def test_truncated_or_swapped_objects_are_detected(backend, keyed, random_key_file):
    repo = backend.open(key_file=random_key_file if keyed else None)
    other = wal_name("000000010000000000000004")
    repo.put_if_absent(SEGMENT, _segment_bytes(b"x"))
    repo.put_if_absent(other, _segment_bytes(b"y"))
    raw = bytes(obstore.get(repo.store.backend, SEGMENT).bytes())
    obstore.put(repo.store.backend, other, raw)  # a valid object, served under another name
    with pytest.raises(IntegrityError, match="000000010000000000000004"):
        repo.read_bytes(other)
    obstore.put(repo.store.backend, SEGMENT, raw[: len(raw) - 40])
    with pytest.raises(IntegrityError, match="000000010000000000000003"):
        repo.read_bytes(SEGMENT)
    # A differing-content check never treats a damaged object as "identical".
    with pytest.raises(IntegrityError):
        repo.put_if_absent(SEGMENT, _segment_bytes(b"x"))


class _ProducerFailed(Exception):
    pass


def test_failing_producer_surfaces_its_error_and_leaves_nothing(backend):
    """pg_dump dying mid-stream: its own error reaches the caller, the upload is abandoned unseen."""
    repo = backend.open()

    def blocks():
        for _ in range(12):
            yield os.urandom(1024 * 1024)
        raise _ProducerFailed("pg_dump exited 1")

    with pytest.raises(_ProducerFailed):
        repo.put_stream("dumps/app/20261206T050000Z/app.dump", blocks())
    assert not repo.exists("dumps/app/20261206T050000Z/app.dump")
    assert repo.list("dumps") == []
