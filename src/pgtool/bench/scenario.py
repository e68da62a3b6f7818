"""What a scenario is: a setup, a baseline and one or more optimized variants doing the same work.

A variant's `run(conn, i)` is one timed unit of work for input number `i`; every variant gets the same
inputs for the same `i` (inputs are derived from `i` deterministically), so the comparison is between
two ways of doing identical work on identical data. `outcome(conn, raw)` turns what `run` returned into
a comparable value (a write reads back what it wrote); `check()` runs every variant on the same inputs
and fails the run if any disagrees with the baseline - a faster query that answers differently is not
an optimisation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pgtool.errors import OperationError

Conn = Any  # psycopg.Connection; kept loose so this module does not import psycopg


@dataclass
class Variant:
    """One way of doing the scenario's work. `connect_kwargs` go to psycopg.connect (prepare_threshold)."""

    name: str
    run: Callable[[Conn, int], Any]
    connect_kwargs: dict[str, Any] = field(default_factory=dict)


class Scenario:
    """Base class: subclasses set `name` and `summary` and implement `setup` and `variants`."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    # Inputs `check()` compares the variants on.
    check_inputs: ClassVar[Sequence[int]] = tuple(range(5))
    # True when a variant needs session state a transaction-mode pooler drops (prepared statements).
    needs_session: ClassVar[bool] = False

    def __init__(self, *, scale: float = 1.0, clients: int = 1) -> None:
        self.scale = scale
        self.clients = clients
        self.notes: list[str] = []

    def setup(self, conn: Conn) -> None:
        """One-time preparation on an autocommit connection in the bench schema (indexes, inputs)."""

    def teardown(self, conn: Conn) -> None:
        """Undo what `setup` created that later scenarios must not see."""

    def variants(self) -> list[Variant]:
        """The baseline first, then the optimized variants."""
        raise NotImplementedError

    def outcome(self, conn: Conn, raw: Any) -> Any:
        """The comparable result of one run (default: what `run` returned)."""
        return raw

    def outcomes(
        self, conns: Mapping[str, Conn], inputs: Sequence[int] | None = None
    ) -> dict[str, list[Any]]:
        """Each variant's outcomes for the same inputs, keyed by variant name."""
        results: dict[str, list[Any]] = {}
        for i in self.check_inputs if inputs is None else inputs:
            for variant in self.variants():
                conn = conns[variant.name]
                results.setdefault(variant.name, []).append(self.outcome(conn, variant.run(conn, i)))
        return results

    def check(self, conns: Mapping[str, Conn], connect: Callable[..., Conn] | None = None) -> None:
        """Raise OperationError unless every variant gives the baseline's results.

        connect: opens more connections to the bench schema, for checks that need concurrent clients.
        """
        results = self.outcomes(conns)
        baseline_name = self.variants()[0].name
        expected = results.get(baseline_name, [])
        for name, got in results.items():
            if got != expected:
                first = next(k for k, (a, b) in enumerate(zip(expected, got, strict=True)) if a != b)
                raise OperationError(
                    f"bench scenario {self.name}: variant {name} gave a different result than "
                    f"{baseline_name} for input {list(self.check_inputs)[first]}",
                    hint="the rewrite is not equivalent; this is a bug in the scenario",
                )
