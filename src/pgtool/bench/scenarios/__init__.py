"""The bench scenarios, in the order they run. Each module holds one family of rewrites."""

from __future__ import annotations

from pgtool.bench.scenario import Scenario
from pgtool.bench.scenarios.carts import CartUpdate
from pgtool.bench.scenarios.listing import CategoryFilter, LowStockFilter
from pgtool.bench.scenarios.orders import OrderCreate5, OrderCreate20
from pgtool.bench.scenarios.prepared import PreparedCache
from pgtool.bench.scenarios.reporting import ReportTopProducts
from pgtool.bench.scenarios.search import ProductSearch

SCENARIOS: tuple[type[Scenario], ...] = (
    OrderCreate20,
    OrderCreate5,
    ProductSearch,
    CategoryFilter,
    LowStockFilter,
    CartUpdate,
    PreparedCache,
    ReportTopProducts,
)

NAMES: tuple[str, ...] = tuple(s.name for s in SCENARIOS)


def by_name(name: str) -> type[Scenario]:
    """The scenario class called `name` (KeyError when there is none)."""
    for scenario in SCENARIOS:
        if scenario.name == name:
            return scenario
    raise KeyError(name)
