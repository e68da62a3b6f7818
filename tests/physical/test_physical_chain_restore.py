"""Restoring an incremental chain (PostgreSQL 18): what is unpacked, what is verified, what is left.

The restore unpacks from the older members only what pg_combinebackup reads, links identical small
files between members, and verifies every member's tars as stored: a relation created between two
backups must still come back, damage in a file that is never unpacked must still be refused, and the
result must share no file with anything left behind.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path

import lz4.frame
import pytest
from incremental_support import recovered_rows, start_summarizing_primary
from physical_support import ArchivingPrimary, recover

from pgharness import binaries_for
from pgtool.errors import OperationError
from pgtool.physical import base_chain, base_combine, base_verify
from pgtool.physical.base_catalog import BaseBackupInfo, list_base_backups


@pytest.fixture
def primary18(work_dir: Path) -> Iterator[ArchivingPrimary]:
    primary = start_summarizing_primary(work_dir)
    yield primary
    primary.cleanup()


def _chain(primary: ArchivingPrimary) -> tuple[list[BaseBackupInfo], list[set[str] | None]]:
    """full; `later` created; incremental 1 (holds `later` whole); more rows; incremental 2. Returns the
    chain (oldest first) and the files the restore unpacks from each member."""
    primary.sql("CREATE TABLE t (i int PRIMARY KEY)")
    primary.sql("CREATE TABLE big AS SELECT g AS i, repeat('x', 200) AS pad FROM generate_series(1, 20000) g")
    primary.sql("INSERT INTO t SELECT generate_series(1, 10)")
    primary.basebackup()
    primary.sql("CREATE TABLE later AS SELECT generate_series(1, 500) AS i")
    primary.sql("UPDATE big SET pad = repeat('y', 200) WHERE i <= 2000")
    primary.basebackup("--incremental")
    primary.sql("INSERT INTO later SELECT generate_series(501, 600)")
    primary.sql("INSERT INTO t SELECT generate_series(11, 20)")
    primary.basebackup("--incremental")
    primary.switch_wal()
    backups = list_base_backups(primary.base_dir)
    chain = base_chain.chain_of(backups, backups[-1])
    assert len(chain) == 3
    needed = base_combine._needed_files([base_verify.read_manifest(m.path) for m in chain if m.path])
    return chain, needed


def _flip_byte_of(tar_path: Path, member: str) -> None:
    with tarfile.open(tar_path, "r:") as tar:
        info = tar.getmember(member)
    with open(tar_path, "r+b") as fh:
        fh.seek(info.offset_data + info.size // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))


def test_a_relation_created_mid_chain_comes_back_and_nothing_is_left_behind(
    primary18: ArchivingPrimary, work_dir: Path
) -> None:
    primary = primary18
    chain, needed = _chain(primary)
    whole = {p for p in needed[1] or () if p.startswith("base/") and "/INCREMENTAL." not in p}
    assert whole  # `later`, whole in the first incremental: the walk back stops there
    assert needed[0] is not None and not whole & needed[0]

    # Through `recover`: the rows of a relation the full backup never had (the restore takes it
    # whole from the first incremental and nothing of it from the full backup).
    pgdata = work_dir / "recovered" / "pgdata"
    result = recover(primary, pgdata)
    assert result.returncode == 0, result.stderr
    assert recovered_rows(primary.major, pgdata, "later") == list(range(1, 601))

    # Directly, the middle member's tar compressed with lz4 (beyond the embedded build's
    # pg_verifybackup: unpacked whole and checked unpacked): no scratch left, and no restored file
    # shares its inode with anything.
    assert chain[1].path is not None
    tar = chain[1].path / "base.tar"
    (chain[1].path / "base.tar.lz4").write_bytes(lz4.frame.compress(tar.read_bytes()))
    tar.unlink()
    parent = work_dir / "direct"
    parent.mkdir()
    restored = base_combine.restore_chain(chain, parent / "pgdata", binaries_for(18))
    assert sorted(p.name for p in parent.iterdir()) == ["pgdata"]
    files = [p for p in restored.pgdata.rglob("*") if p.is_file() and not p.is_symlink()]
    assert len(files) > 100
    assert [p for p in files if p.stat().st_nlink != 1] == []
    assert not (restored.pgdata / "backup_manifest").exists()  # a data directory, not a backup


def test_damage_in_a_file_the_restore_never_unpacks_is_still_refused(
    primary18: ArchivingPrimary, work_dir: Path
) -> None:
    primary = primary18
    chain, needed = _chain(primary)
    middle = chain[1]
    assert middle.path is not None
    assert needed[1] is not None and "postgresql.conf" not in needed[1]  # read past, never written
    _flip_byte_of(middle.path / "base.tar", "postgresql.conf")

    parent = work_dir / "damaged"
    parent.mkdir()
    with pytest.raises(OperationError) as refused:
        base_combine.restore_chain(chain, parent / "pgdata", binaries_for(18))
    assert f"base backup {middle.id} of the chain fails pg_verifybackup" in refused.value.message
    assert "postgresql.conf" in refused.value.message
    assert sorted(p.name for p in parent.iterdir()) == ["pgdata"]
    assert list((parent / "pgdata").iterdir()) == []  # nothing combined, nothing to start

    result = recover(primary, work_dir / "recovered")
    assert result.returncode == 1
    assert f"base backup {middle.id} of the chain fails pg_verifybackup" in result.stderr, result.stderr
