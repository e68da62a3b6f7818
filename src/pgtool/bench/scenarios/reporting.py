"""report_top_products: the three best sellers of every category - an application-side loop (one
query per category, the classic N+1) versus one query with `row_number() OVER (PARTITION BY category ...)`.

Both read the sample schema's `mv_product_performance`, as the reporting jobs do. What the window
function saves is a round trip per category, so the gap grows with the number of categories and with
the round-trip time.
"""

from __future__ import annotations

from typing import Any

from pgtool.bench.scenario import Conn, Scenario, Variant

TOP = 3
CATEGORIES = "SELECT DISTINCT category FROM mv_product_performance ORDER BY category"
PER_CATEGORY = (
    "SELECT category, product_id, name, units_sold FROM mv_product_performance "
    "WHERE category = %s ORDER BY units_sold DESC, product_id LIMIT %s"
)
WINDOWED = (
    "SELECT category, product_id, name, units_sold FROM ("
    "SELECT category, product_id, name, units_sold, "
    "row_number() OVER (PARTITION BY category ORDER BY units_sold DESC, product_id) AS rank "
    "FROM mv_product_performance) ranked "
    "WHERE rank <= %s ORDER BY category, rank"
)


class ReportTopProducts(Scenario):
    name = "report_top_products"
    summary = "top 3 products per category: a query per category (app loop) vs row_number() OVER"
    check_inputs = (0,)

    def app_loop(self, conn: Conn, i: int) -> Any:
        rows = []
        for (category,) in conn.execute(CATEGORIES).fetchall():
            rows.extend(conn.execute(PER_CATEGORY, (category, TOP)).fetchall())
        return rows

    def window(self, conn: Conn, i: int) -> Any:
        return conn.execute(WINDOWED, (TOP,)).fetchall()

    def variants(self) -> list[Variant]:
        return [Variant("query_per_category", self.app_loop), Variant("row_number_over", self.window)]
