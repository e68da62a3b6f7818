"""Fixtures for base backups, PITR and the base drill: a dedicated archiving primary per test.

`primary` is a fresh cluster of the test's PostgreSQL major (15 unless the test is marked
`all_versions` or `pg_version(n)`) whose archive_command is the real `pgtool archive-wal` into
`primary.archive_dir`. Its own cluster (not the session one), because archive_mode needs a restart
and each test needs an archive of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from physical_support import ArchivingPrimary, start_archiving_primary

from pgharness import rmtree, server_writable_dir


@pytest.fixture
def work_dir() -> Iterator[Path]:
    """Scratch space both pgtool and the server user can write: backups, recovered copies."""
    path = server_writable_dir("pgtool-phys-")
    yield path
    rmtree(path)


@pytest.fixture
def primary(pg_major: int, work_dir: Path) -> Iterator[ArchivingPrimary]:
    primary = start_archiving_primary(pg_major, work_dir)
    yield primary
    primary.cleanup()


@pytest.fixture
def zstd_primary(pg_major: int, work_dir: Path) -> Iterator[ArchivingPrimary]:
    """Like `primary`, archiving with `pgtool archive-wal --compress zstd` (NAME.zst files)."""
    primary = start_archiving_primary(pg_major, work_dir, compress="zstd")
    yield primary
    primary.cleanup()
