"""Retention's WAL pruning with a small wal_segment_size (initdb --wal-segsize=1): past the first 4 GiB
of WAL, segment names of different log ids share a 16 MiB-based segment number; each must still go."""

from __future__ import annotations

from pgtool.physical.base_retention import prune_archive


def test_prune_removes_every_older_segment_whatever_the_segment_size(tmp_path):
    archive = tmp_path / "wal"
    archive.mkdir()
    # With 1 MiB segments a log id holds 4096 segments: 0/100 and 1/0 are both segment number 256 if
    # counted in 16 MiB segments (256 per log id).
    older = ["000000010000000000000100", "000000010000000100000000", "000000010000000100000004"]
    kept = ["000000010000000100000005", "000000010000000100000006", "00000002.history"]
    for name in older + kept:
        (archive / name).write_bytes(b"")

    removed = prune_archive(archive, "000000010000000100000005", max_timeline=1)

    assert sorted(removed) == sorted(older)
    assert sorted(p.name for p in archive.iterdir()) == sorted(kept)
