"""Typed outcomes for what a shop's queries must expect: no row, and a unique violation (SQLSTATE 23505).

Variants are compared on their outcomes (`Scenario.check`), so "that cart line is not there" and "that
key is already taken" are values, `NotFound` and `AlreadyExists`, equal across variants that refuse the
same input for the same reason - instead of a TypeError on `None[0]` or a psycopg error ending the run.
A rewrite that raises where the baseline answers `AlreadyExists` (or the reverse) fails the check like any
other different answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg


@dataclass(frozen=True)
class NotFound:
    """The query found no row for `what` (a cart line, an order, a product)."""

    what: str


@dataclass(frozen=True)
class AlreadyExists:
    """A unique constraint refused the write; `constraint` is the one PostgreSQL named."""

    constraint: str


def one_row(row: Any, what: str) -> Any:
    """`row` (a fetchone() result), or NotFound(what) when there was none."""
    return NotFound(what) if row is None else row


def first_value(row: Any, what: str) -> Any:
    """The first column of `row` (a fetchone() result), or NotFound(what) when there was no row."""
    return NotFound(what) if row is None else row[0]


def unique_checked(run: Callable[[Any, int], Any]) -> Callable[[Any, int], Any]:
    """`run` with a unique violation turned into AlreadyExists(constraint).

    The caller's transaction (or single statement) has rolled back by then, so nothing of the refused
    write is left; any other error still propagates.
    """

    def checked(conn: Any, i: int) -> Any:
        try:
            return run(conn, i)
        except psycopg.errors.UniqueViolation as exc:
            return AlreadyExists(exc.diag.constraint_name or "")

    checked.__name__ = getattr(run, "__name__", "checked")
    return checked
