"""product_search: a paginated search - `SELECT COUNT(*)` then the page, versus one query with
`COUNT(*) OVER ()` that returns the total on every row of the page.

The search is what a shop's search box sends: a case-insensitive word or two-word phrase anywhere in
the product name (`ILIKE '%deluxe lamp%'`; the sample schema has no search index, so each query scans
products), results ordered by name, 20 per page, at a page that exists. When the requested page is
past the end, the window query returns no row and so no total; the application then needs the count
after all (handled, so both sides always answer the same).
"""

from __future__ import annotations

import collections
import random
from typing import Any

from pgtool.bench.scenario import Conn, Scenario, Variant
from pgtool.errors import OperationError

PAGE = 20
INPUTS = 1024
COUNT = "SELECT count(*) FROM products WHERE name ILIKE %s"
PAGE_QUERY = (
    "SELECT id, sku, name, price FROM products WHERE name ILIKE %s ORDER BY name, id LIMIT %s OFFSET %s"
)
WINDOW_QUERY = (
    "SELECT id, sku, name, price, count(*) OVER () FROM products WHERE name ILIKE %s "
    "ORDER BY name, id LIMIT %s OFFSET %s"
)


class ProductSearch(Scenario):
    name = "product_search"
    summary = "paginated search: COUNT(*) then the page vs one query with COUNT(*) OVER ()"

    def setup(self, conn: Conn) -> None:
        # What shoppers type: one word ("lamp") or a two-word phrase ("deluxe lamp"). Every term that
        # matches more than one page (so pagination matters) and at most a quarter of the products (so
        # it narrows something down) is equally likely; the page asked for is one that exists.
        names = [row[0] for row in conn.execute("SELECT name FROM products")]
        terms: collections.Counter[str] = collections.Counter()
        for name in names:
            words = [w for w in name.lower().split() if w.isalpha()]
            found = set(words) | {" ".join(words[k : k + 2]) for k in range(len(words) - 1)}
            terms.update(found)
        chosen = sorted(t for t, n in terms.items() if PAGE < n <= len(names) / 4)
        if not chosen:  # tiny scales: whatever repeats
            chosen = sorted(t for t, n in terms.items() if n > 1) or sorted(terms)
        if not chosen:
            raise OperationError("bench scenario product_search found no products", hint="raise --scale")
        rng = random.Random(self.name)  # noqa: S311 - reproducible inputs, not secrets
        self.inputs: list[tuple[str, int]] = []
        for _ in range(INPUTS):
            term = rng.choice(chosen)
            pages = max(1, -(-terms[term] // PAGE))
            self.inputs.append((f"%{term}%", rng.randrange(pages) * PAGE))

    def count_then_page(self, conn: Conn, i: int) -> Any:
        pattern, offset = self.inputs[i % INPUTS]
        total = conn.execute(COUNT, (pattern,)).fetchone()[0]
        rows = conn.execute(PAGE_QUERY, (pattern, PAGE, offset)).fetchall()
        return total, rows

    def count_over(self, conn: Conn, i: int) -> Any:
        pattern, offset = self.inputs[i % INPUTS]
        rows = conn.execute(WINDOW_QUERY, (pattern, PAGE, offset)).fetchall()
        if rows:
            return rows[0][4], [row[:4] for row in rows]
        # Past the last page there is no row to carry the total: ask for it (rare, like the page).
        return conn.execute(COUNT, (pattern,)).fetchone()[0], []

    def variants(self) -> list[Variant]:
        return [Variant("count_then_page", self.count_then_page), Variant("count_over", self.count_over)]
