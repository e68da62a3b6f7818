"""No row and unique violations (23505) are typed outcomes every variant must agree on (real PostgreSQL)."""

from __future__ import annotations

import pytest

from pgtool.bench.outcomes import AlreadyExists, NotFound
from pgtool.bench.runner import variant_connections
from pgtool.bench.scenarios.carts import CartUpdate
from pgtool.bench.scenarios.orders import DUPLICATE_LINE, OrderCreate5, OrderCreate20
from pgtool.bench.scenarios.prepared import MISSING, PreparedCache


def _order_count(conn) -> tuple[int, int]:
    return conn.execute("SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM order_items)").fetchone()


@pytest.mark.all_versions
@pytest.mark.parametrize("scenario_cls", [OrderCreate5, OrderCreate20], ids=lambda s: s.name)
def test_an_order_repeating_a_line_number_is_already_exists_in_every_variant(bench_target, scenario_cls):
    scenario = scenario_cls(scale=0.05)
    with bench_target.connect() as conn:
        scenario.setup(conn)
        before = _order_count(conn)
        with variant_connections(bench_target, scenario.variants()) as conns:
            results = scenario.outcomes(conns, inputs=[DUPLICATE_LINE])
            # per item, one statement, COPY and the pipeline: the same refusal, nothing stored
            assert results == {v.name: [AlreadyExists("order_items_pkey")] for v in scenario.variants()}
            assert _order_count(conn) == before
            # connections are usable afterwards, and the run's own check includes the refused order
            assert DUPLICATE_LINE in scenario.check_inputs
            scenario.check(conns)


def test_updating_a_line_the_cart_does_not_hold_is_not_found_for_both_variants(bench_target):
    scenario = CartUpdate()
    with bench_target.connect() as conn:
        scenario.setup(conn)
        cart, _product = scenario.lines[0]
        held = conn.execute(
            "SELECT 1 FROM cart_items WHERE cart_id = %s AND product_id = %s", (cart, scenario.absent)
        ).fetchone()
        assert held is None
        assert CartUpdate.read_check_write(conn, cart, scenario.absent, 1) == NotFound("cart line")
        assert CartUpdate.atomic(conn, cart, scenario.absent, 1) == NotFound("cart line")
        # a refused update on a line that is there stays a plain False, not NotFound
        assert CartUpdate.atomic(conn, *scenario.lines[0], -1_000_000) is False
        assert CartUpdate.read_check_write(conn, *scenario.lines[0], -1_000_000) is False
    with variant_connections(bench_target, scenario.variants()) as conns:
        results = scenario.outcomes(conns, inputs=[0])
        missing = (NotFound("cart line"), NotFound("cart line"))
        assert results["read_check_write"][-1] == results["atomic_cte"][-1] == missing
        scenario.check(conns)


def test_a_missing_product_or_order_page_is_not_found_with_and_without_prepared_statements(bench_target):
    scenario = PreparedCache()
    with bench_target.connect() as conn:
        scenario.setup(conn)
    with variant_connections(bench_target, scenario.variants()) as conns:
        results = scenario.outcomes(conns, inputs=[MISSING])
        for name, (outcome,) in results.items():
            product, _cart, order = outcome
            assert (product, order) == (NotFound("product"), NotFound("order")), name
        assert MISSING in scenario.check_inputs
        scenario.check(conns)
