"""Fixtures for the status/top tests (helpers live in ops_helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ops_helpers import ArchivingSetup, archiving_setup


@pytest.fixture(scope="module")
def archiving() -> Iterator[ArchivingSetup]:
    """A PostgreSQL 15 cluster archiving with cp, one real base backup, WAL archived after it."""
    yield from archiving_setup()
