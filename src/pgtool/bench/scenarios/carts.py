"""cart_update: change a cart line's quantity if the cart is open and stock allows.

Baseline: the read-check-then-write an application writes first - in a transaction, read the cart's
status, the line's quantity and the product's stock, decide in the application, then UPDATE with the
computed quantity (BEGIN, SELECT, UPDATE, COMMIT: four round trips). Under READ COMMITTED two clients
doing this at once both read the same quantity and the second write overwrites the first: a lost update.

Optimized: one atomic statement, `WITH updated AS (UPDATE ... SET quantity = quantity + delta ...
WHERE <checks> RETURNING ...) SELECT EXISTS (...)`: one round trip, and PostgreSQL re-checks the
conditions against the newest row version when another transaction changed it first, so no update is
lost.

A line that is not in the cart is `NotFound('cart line')` for both (the atomic statement tells it from
a refused update by whether the line existed in its snapshot), a refused update is False.

`check()` compares both on the same inputs (restoring the line in between), then runs the concurrency
check: several clients increment one line at once with each variant; the atomic statement must keep
every increment (else the run fails); the baseline's losses are reported as a note.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from pgtool.bench.outcomes import NotFound, first_value
from pgtool.bench.scenario import Conn, Scenario, Variant
from pgtool.errors import OperationError

READ = (
    "SELECT c.status, ci.quantity, p.stock FROM cart_items ci "
    "JOIN carts c ON c.id = ci.cart_id JOIN products p ON p.id = ci.product_id "
    "WHERE ci.cart_id = %s AND ci.product_id = %s"
)
WRITE = "UPDATE cart_items SET quantity = %s WHERE cart_id = %s AND product_id = %s"
ATOMIC = (
    "WITH updated AS ("
    "UPDATE cart_items ci SET quantity = ci.quantity + %(delta)s "
    "FROM carts c, products p "
    "WHERE ci.cart_id = %(cart)s AND ci.product_id = %(product)s "
    "AND c.id = ci.cart_id AND c.status = 'open' "
    "AND p.id = ci.product_id AND ci.quantity + %(delta)s BETWEEN 1 AND p.stock "
    "RETURNING ci.quantity) "
    "SELECT EXISTS (SELECT 1 FROM updated), "
    "EXISTS (SELECT 1 FROM cart_items WHERE cart_id = %(cart)s AND product_id = %(product)s)"
)
NOT_IN_CART = NotFound("cart line")
QUANTITY = "SELECT quantity FROM cart_items WHERE cart_id = %s AND product_id = %s"
CONCURRENT_CLIENTS = 4
INCREMENTS_PER_CLIENT = 25


class CartUpdate(Scenario):
    name = "cart_update"
    summary = "cart line update: read-check-write in a transaction vs one atomic UPDATE ... RETURNING CTE"

    def setup(self, conn: Conn) -> None:
        # Lines of open carts with room for +2 (each input is applied by both variants) above their
        # quantity; inputs walk the lines adding 1, then on the next pass removing 1, so quantities stay
        # within [q, q + 2] however long the run.
        self.lines: list[tuple[int, int]] = [
            (row[0], row[1])
            for row in conn.execute(
                "SELECT ci.cart_id, ci.product_id FROM cart_items ci "
                "JOIN carts c ON c.id = ci.cart_id JOIN products p ON p.id = ci.product_id "
                "WHERE c.status = 'open' AND ci.quantity + 2 <= p.stock ORDER BY 1, 2"
            )
        ]
        if not self.lines:
            raise OperationError("bench scenario cart_update found no open cart lines", hint="raise --scale")
        # A product the first line's cart does not hold: updating it must be NotFound, not a crash.
        self.absent: int = conn.execute(
            "SELECT coalesce((SELECT min(p.id) FROM products p WHERE NOT EXISTS (SELECT 1 FROM cart_items ci "
            "WHERE ci.cart_id = %s AND ci.product_id = p.id)), (SELECT max(id) + 1 FROM products))",
            (self.lines[0][0],),
        ).fetchone()[0]

    def _input(self, i: int) -> tuple[int, int, int]:
        cart, product = self.lines[i % len(self.lines)]
        delta = 1 if (i // len(self.lines)) % 2 == 0 else -1
        return cart, product, delta

    @staticmethod
    def read_check_write(conn: Conn, cart: int, product: int, delta: int) -> bool | NotFound:
        with conn.transaction():
            row = conn.execute(READ, (cart, product)).fetchone()
            if row is None:
                return NOT_IN_CART
            if row[0] != "open":
                return False
            quantity = row[1] + delta
            if not 1 <= quantity <= row[2]:
                return False
            conn.execute(WRITE, (quantity, cart, product))
            return True

    @staticmethod
    def atomic(conn: Conn, cart: int, product: int, delta: int) -> bool | NotFound:
        updated, existed = conn.execute(ATOMIC, {"delta": delta, "cart": cart, "product": product}).fetchone()
        return bool(updated) if existed else NOT_IN_CART

    def baseline(self, conn: Conn, i: int) -> Any:
        return self.read_check_write(conn, *self._input(i))

    def optimized(self, conn: Conn, i: int) -> Any:
        return self.atomic(conn, *self._input(i))

    def variants(self) -> list[Variant]:
        return [Variant("read_check_write", self.baseline), Variant("atomic_cte", self.optimized)]

    def outcomes(self, conns: Mapping[str, Conn], inputs: Any = None) -> dict[str, list[Any]]:
        """(updated?, quantity after) per variant, each starting from the same line state."""
        results: dict[str, list[Any]] = {}
        inputs = list(self.check_inputs if inputs is None else inputs)
        # Also an input that must be refused (taking the line below 1) and a line the cart does not hold.
        cases = [self._input(i) for i in inputs]
        cart, product = self.lines[0]
        cases += [(cart, product, -1_000_000), (cart, self.absent, 1)]
        for cart, product, delta in cases:
            for variant, fn in self._fns():
                conn = conns[variant]
                before = first_value(conn.execute(QUANTITY, (cart, product)).fetchone(), "cart line")
                updated = fn(conn, cart, product, delta)
                after = first_value(conn.execute(QUANTITY, (cart, product)).fetchone(), "cart line")
                if not isinstance(before, NotFound):
                    conn.execute(
                        "UPDATE cart_items SET quantity = %s WHERE cart_id = %s AND product_id = %s",
                        (before, cart, product),
                    )
                results.setdefault(variant, []).append((updated, after))
        return results

    def check(self, conns: Mapping[str, Conn], connect: Callable[..., Conn] | None = None) -> None:
        super().check(conns)
        if connect is None:
            return
        clients = max(CONCURRENT_CLIENTS, self.clients)
        lost = {name: self.lost_updates(conns[name], connect, fn, clients) for name, fn in self._fns()}
        if lost["atomic_cte"]:
            raise OperationError(
                f"bench scenario cart_update: the atomic update lost {lost['atomic_cte']} of "
                f"{clients * INCREMENTS_PER_CLIENT} concurrent increments",
                hint="this is a bug in the scenario",
            )
        self.notes.append(
            f"concurrency check ({clients} clients x {INCREMENTS_PER_CLIENT} increments of one line): "
            f"atomic_cte lost 0, read_check_write lost {lost['read_check_write']}"
        )

    def _fns(self) -> list[tuple[str, Callable[[Conn, int, int, int], bool | NotFound]]]:
        return [("read_check_write", self.read_check_write), ("atomic_cte", self.atomic)]

    @staticmethod
    def lost_updates(
        conn: Conn,
        connect: Callable[..., Conn],
        fn: Callable[[Conn, int, int, int], bool | NotFound],
        clients: int,
    ) -> int:
        """Increments lost when `clients` connections each add 1 to one fresh line, all at once."""
        product = conn.execute("SELECT id FROM products ORDER BY stock DESC, id LIMIT 1").fetchone()[0]
        with conn.transaction():
            user = conn.execute("SELECT id FROM users ORDER BY id LIMIT 1").fetchone()[0]
            cart = conn.execute(
                "INSERT INTO carts (user_id, status) VALUES (%s, 'open') RETURNING id", (user,)
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO cart_items (cart_id, product_id, user_id, quantity) VALUES (%s, %s, %s, 1)",
                (cart, product, user),
            )
            needed = 1 + clients * INCREMENTS_PER_CLIENT
            # Make room for every increment: the check is about concurrency, not stock.
            conn.execute(
                "UPDATE products SET stock = %s WHERE id = %s AND stock < %s",
                (needed, product, needed),
            )
        start = threading.Barrier(clients)
        errors: list[BaseException] = []
        refused = [0] * clients

        def client(k: int) -> None:
            try:
                with connect() as own:
                    start.wait(timeout=60)
                    for _ in range(INCREMENTS_PER_CLIENT):
                        if fn(own, cart, product, 1) is not True:
                            refused[k] += 1
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        try:
            if errors:
                raise errors[0]
            final = int(conn.execute(QUANTITY, (cart, product)).fetchone()[0])
            return 1 + clients * INCREMENTS_PER_CLIENT - sum(refused) - final
        finally:
            conn.execute("DELETE FROM carts WHERE id = %s", (cart,))
