"""Helpers shared by the schema-operations tests (a module with a repo-unique name, not conftest)."""

from __future__ import annotations

from typing import Any


def scalar(db: Any, query: str, params: Any = None) -> Any:
    """The first column of the first row of `query` on the test database `db`."""
    rows = db.execute(query, params)
    return rows[0][0]
