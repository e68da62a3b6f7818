"""The local repository's stdlib store (pgtool.repo.localfs): conditional create under a real race
between processes, fsync before the name appears and of the directory after, staging files never listed
nor read, damage found on read, and the same files as obstore's LocalStore in both directions."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import obstore
import pytest

from pgtool.repo import IntegrityError, ObjectAbsent, ObjectDiffers, RepoError, open_repository, wal_name
from pgtool.repo.localfs import LocalFiles, is_staging
from pgtool.repo.store import Store
from pgtool.repo.url import parse_repo_url

SEG = wal_name("000000010000000000000010")


def _race(root: str, name: str, data: bytes, start, out) -> None:
    store = LocalFiles(parse_repo_url(root))
    start.wait()
    out.put((data[:1], store.create(name, data)))


def test_conditional_create_has_one_winner_across_processes(tmp_path):
    ctx = multiprocessing.get_context("fork")
    for round_ in range(6):
        name = f"wal/00000001/race-{round_}"
        start, out = ctx.Event(), ctx.Queue()
        # 4 MiB each, distinct: a loser that overwrote or a reader of a half-written file would show
        payloads = [bytes([65 + i]) * (4 << 20) for i in range(4)]
        procs = [ctx.Process(target=_race, args=(str(tmp_path), name, p, start, out)) for p in payloads]
        for p in procs:
            p.start()
        start.set()
        results = [out.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        winners = [tag for tag, created in results if created]
        assert len(winners) == 1, results
        stored = (tmp_path / name).read_bytes()
        assert stored == winners[0] * (4 << 20)  # whole, and the winner's
        assert sorted(os.listdir(tmp_path / "wal" / "00000001")) == sorted(
            f"race-{r}" for r in range(round_ + 1)
        )  # no staging file left behind by anyone


def test_repository_duplicates_and_differences(tmp_path):
    repo = open_repository(str(tmp_path), create=True)
    assert repo.put_if_absent(SEG, b"segment bytes" * 1000) is True
    assert repo.put_if_absent(SEG, b"segment bytes" * 1000) is False  # identical: success, untouched
    before = (tmp_path / SEG).read_bytes()
    with pytest.raises(ObjectDiffers):
        repo.put_if_absent(SEG, b"other bytes" * 1000)
    assert (tmp_path / SEG).read_bytes() == before
    with pytest.raises(ObjectDiffers):
        repo.put_stream(SEG, iter([b"x" * 10]))
    assert repo.read_bytes(SEG) == b"segment bytes" * 1000


def test_publish_fsyncs_the_file_before_its_name_and_the_directory_after(tmp_path, monkeypatch):
    """The order of the real system calls, recorded on their way through (they still run)."""
    store = LocalFiles(parse_repo_url(str(tmp_path)))
    final = str(tmp_path / "wal" / "00000001" / "obj")
    events: list[tuple[str, str]] = []
    real_fsync, real_link = os.fsync, os.link

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def link(src: str, dst: str) -> None:
        events.append(("link", dst))
        real_link(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", link)
    assert store.create("wal/00000001/obj", b"payload")
    at = events.index(("link", final))
    staged = [path for kind, path in events[:at] if kind == "fsync" and path.startswith(final + "#")]
    assert staged, events  # the content was fsynced under its staging name, before it had its name
    assert ("fsync", os.path.dirname(final)) in events[at + 1 :]  # then the directory holding the name
    # the new directories themselves were fsynced into their parents before anything was published
    assert ("fsync", str(tmp_path)) in events[:at] and ("fsync", str(tmp_path / "wal")) in events[:at]
    assert Path(final).read_bytes() == b"payload"


def test_staging_files_are_never_listed_nor_read(tmp_path):
    repo = open_repository(str(tmp_path), create=True)
    repo.put_if_absent(SEG, b"real")
    folder = tmp_path / "wal" / "00000001"
    (folder / "000000010000000000000011#123450000").write_bytes(b"half a segment")  # a crashed writer
    (folder / "000000010000000000000010#7").write_bytes(b"another")
    (folder / "subdir").mkdir()
    assert is_staging("x#0012") and not is_staging("x#12a") and not is_staging("x#") and not is_staging("x")
    listed = [info.name for info in repo.list("wal/")]
    assert listed == [SEG]
    assert not repo.exists("wal/00000001/subdir")
    with pytest.raises(ObjectAbsent):
        repo.read_bytes(wal_name("000000010000000000000011"))
    # obstore's LocalStore applies the same rule to the same files
    obstore_names = [m["path"] for batch in obstore.list(repo.store.backend, prefix="wal") for m in batch]
    assert sorted(obstore_names) == [SEG]


def test_damaged_object_is_detected_on_read(tmp_path):
    repo = open_repository(str(tmp_path), create=True)
    data = os.urandom(1 << 20) + bytes(1 << 20)
    repo.put_if_absent(SEG, data)
    raw = bytearray((tmp_path / SEG).read_bytes())
    raw[len(raw) // 2] ^= 0x04
    (tmp_path / SEG).write_bytes(bytes(raw))
    with pytest.raises(IntegrityError) as info:
        repo.read_bytes(SEG)
    assert repo.where(SEG) in info.value.one_line()
    (tmp_path / SEG).write_bytes(bytes(raw[:-1]))  # truncated by one byte
    with pytest.raises(IntegrityError):
        repo.read_bytes(SEG)


def test_same_files_as_obstore_localstore_both_ways(tmp_path):
    url = parse_repo_url(f"file://{tmp_path}")
    ours, theirs = LocalFiles(url), Store(url)
    assert ours.create("wal/00000001/a", b"written by localfs")
    assert theirs.create("wal/00000001/b", b"written by obstore")
    assert not theirs.create("wal/00000001/a", b"x") and not ours.create("wal/00000001/b", b"x")
    ours.put_stream("base/s1/base.tar", iter([b"t" * 1000, b"u" * 1000]))
    for store in (ours, theirs):
        assert b"".join(store.get_stream("wal/00000001/b")) == b"written by obstore"
        assert b"".join(store.get_stream("wal/00000001/a")) == b"written by localfs"
        assert sorted((i.name, i.size) for i in store.list("")) == [
            ("base/s1/base.tar", 2000),
            ("wal/00000001/a", 18),
            ("wal/00000001/b", 18),
        ]
        assert store.head("wal/00000001/a").size == 18  # type: ignore[union-attr]
        assert store.head("wal/00000001") is None  # a directory is no object
        assert store.tail("base/s1/base.tar", 3) == (2000, b"uuu")
    ours.delete("wal/00000001/b")
    assert theirs.head("wal/00000001/b") is None
    ours.delete("wal/00000001/b")  # absent: not an error


def test_a_repository_directory_that_vanished_is_not_absent(tmp_path):
    repo = open_repository(str(tmp_path / "r"), create=True)
    os.rename(tmp_path / "r", tmp_path / "moved")
    with pytest.raises(RepoError) as info:
        repo.read_bytes(SEG)
    assert not isinstance(info.value, ObjectAbsent)  # restore-wal must not end recovery on this
