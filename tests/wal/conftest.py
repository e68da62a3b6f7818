"""WAL fixtures: real, complete WAL segments copied out of the session clusters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from walsegments import complete_segment

from pgharness import rmtree, server_writable_dir


@pytest.fixture
def work_dir() -> Iterator[Path]:
    path = server_writable_dir("pgtool-wal-")
    yield path
    rmtree(path)


@pytest.fixture
def archive_dir(work_dir: Path) -> Path:
    path = work_dir / "archive"
    path.mkdir()
    return path


@pytest.fixture
def segment(cluster: Any, work_dir: Path) -> tuple[Path, str]:
    """A complete real segment of the test's PostgreSQL version: (path of a copy, its WAL name)."""
    return complete_segment(cluster, work_dir)
