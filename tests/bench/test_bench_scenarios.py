"""Every scenario's variants give the same results on the same data (real PostgreSQL, tiny scale)."""

from __future__ import annotations

from typing import Any

import pytest

from pgtool.bench.runner import measure, variant_connections
from pgtool.bench.scenario import Scenario, Variant
from pgtool.bench.scenarios import NAMES, SCENARIOS
from pgtool.bench.scenarios.carts import CartUpdate
from pgtool.errors import OperationError


def _meaningful(value: Any) -> bool:
    """Not an empty answer: comparing two empty lists would prove nothing."""
    if isinstance(value, list | tuple):
        return any(_meaningful(v) for v in value)
    return value is not None and value is not False


@pytest.mark.all_versions
@pytest.mark.parametrize("scenario_cls", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_variants_return_identical_results(bench_target, scenario_cls):
    scenario = scenario_cls(scale=0.05)
    with bench_target.connect() as conn:
        scenario.setup(conn)
    variants = scenario.variants()
    assert len(variants) >= 2
    with variant_connections(bench_target, variants) as conns:
        results = scenario.outcomes(conns, inputs=range(6))
        baseline = results[variants[0].name]
        assert len(baseline) >= 6
        assert _meaningful(baseline), baseline
        for variant in variants[1:]:
            assert results[variant.name] == baseline, variant.name
        scenario.check(conns)  # the run's own guard agrees


def test_scenario_names_are_unique_and_listed():
    assert len(set(NAMES)) == len(NAMES)
    for name in ("order_create_20", "order_create_5", "product_search", "category_filter", "cart_update"):
        assert name in NAMES
    assert "prepared_cache" in NAMES


def test_atomic_cart_update_loses_no_concurrent_increment(bench_target):
    scenario = CartUpdate(clients=4)
    with bench_target.connect() as conn:
        scenario.setup(conn)
        lost_atomic = scenario.lost_updates(conn, bench_target.connect, CartUpdate.atomic, 4)
    assert lost_atomic == 0
    with variant_connections(bench_target, scenario.variants()) as conns:
        scenario.check(conns, connect=bench_target.connect)
    assert any("atomic_cte lost 0" in note for note in scenario.notes)


class _Wrong(Scenario):
    name = "wrong"
    summary = "a rewrite that answers differently"

    def variants(self) -> list[Variant]:
        return [
            Variant("right", lambda conn, i: conn.execute("SELECT count(*) FROM products").fetchone()[0]),
            Variant("wrong", lambda conn, i: conn.execute("SELECT count(*) + 1 FROM products").fetchone()[0]),
        ]


def test_a_rewrite_that_answers_differently_fails_the_run(bench_target):
    with pytest.raises(OperationError, match="different result"):
        measure(_Wrong(), bench_target, iterations=2, warmup=0)


def test_measure_alternates_and_counts_every_iteration(bench_target):
    seen: list[str] = []

    class Recording(Scenario):
        name = "recording"
        check_inputs = ()

        def variants(self) -> list[Variant]:
            def run(label: str) -> Any:
                return lambda conn, i: seen.append(label)

            return [Variant("a", run("A")), Variant("b", run("B"))]

    result = measure(Recording(), bench_target, iterations=3, warmup=1)
    assert "".join(seen) == "ABABABAB"
    assert result.iterations == 3
    assert result.variants["b"].count == 3
    assert result.best == "b"


def test_own_schema_is_dropped_even_when_the_run_fails(cluster):
    from pgharness import create_database, drop_database
    from pgtool.bench.target import in_own_schema

    db = create_database(cluster, prefix="benchfail")
    try:
        with pytest.raises(OperationError), in_own_schema(cluster.dsn(db.name, tcp=True)) as target:
            with target.connect() as conn:
                conn.execute("CREATE TABLE products AS SELECT 1 AS id")
            measure(_Wrong(), target, iterations=1, warmup=0)
        with cluster.connect(db.name) as conn:
            left = conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'pgtool_bench_%'"
            ).fetchall()
        assert left == []
    finally:
        drop_database(db)
