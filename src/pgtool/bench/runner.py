"""The measurement loop: warm up, then alternate the variants A B A B ... timing each run on its own.

Alternation is what makes the ratios fair on a shared, noisy machine: whatever slows the machine down
for a while (another process, a checkpoint, CPU frequency) hits the baseline and the optimized variant
alike, instead of one of them running entirely in a quiet minute. Each variant has its own connection
(prepare_threshold differs per variant in one scenario), each client its own set of connections.
Timings are wall-clock per unit of work, `time.perf_counter_ns` around the call, client side: what an
application sees, round trips included.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pgtool.bench.scenario import Scenario, Variant
from pgtool.bench.stats import Summary, percentile, speedup
from pgtool.bench.target import Target


@dataclass
class ScenarioResult:
    """A scenario's measured variants: `baseline`, and every optimized variant (best = lowest p50)."""

    name: str
    summary: str
    baseline: str
    variants: dict[str, Summary]
    notes: list[str] = field(default_factory=list)
    # Median over iterations of (baseline time / this variant's time) within the same A/B pair: a
    # second, outlier-robust estimate to set beside the ratio of medians on a noisy machine.
    paired: dict[str, float] = field(default_factory=dict)

    @property
    def optimized(self) -> dict[str, Summary]:
        return {k: v for k, v in self.variants.items() if k != self.baseline}

    @property
    def best(self) -> str:
        return min(self.optimized, key=lambda k: self.optimized[k].p50_ms)

    @property
    def speedup(self) -> float:
        return speedup(self.variants[self.baseline], self.variants[self.best])

    @property
    def iterations(self) -> int:
        return self.variants[self.baseline].count


@contextlib.contextmanager
def variant_connections(target: Target, variants: list[Variant]) -> Iterator[dict[str, Any]]:
    """One open connection per variant, closed afterwards."""
    with contextlib.ExitStack() as stack:
        conns = {}
        for variant in variants:
            conns[variant.name] = stack.enter_context(target.connect(**variant.connect_kwargs))
        yield conns


def measure_rtt(target: Target, samples: int = 200) -> Summary:
    """Round-trip time of `SELECT 1` on a fresh connection (after a few unmeasured ones)."""
    timings = []
    with target.connect() as conn:
        for _ in range(20):
            conn.execute("SELECT 1").fetchone()
        for _ in range(samples):
            start = time.perf_counter_ns()
            conn.execute("SELECT 1").fetchone()
            timings.append(time.perf_counter_ns() - start)
    return Summary.of(timings)


def _client_loop(
    scenario: Scenario,
    conns: dict[str, Any],
    client: int,
    clients: int,
    warmup: int,
    iterations: int,
    samples: dict[str, list[int]],
    advance: Callable[[int], None],
) -> None:
    variants = scenario.variants()
    # Inputs are numbered across clients so no two clients work on the same input at once.
    index = client
    for _ in range(warmup):
        for variant in variants:
            variant.run(conns[variant.name], index)
        index += clients
    clock = time.perf_counter_ns
    for _ in range(iterations):
        for variant in variants:
            conn = conns[variant.name]
            start = clock()
            variant.run(conn, index)
            samples[variant.name].append(clock() - start)
        index += clients
        advance(1)


def measure(
    scenario: Scenario,
    target: Target,
    *,
    iterations: int,
    warmup: int,
    clients: int = 1,
    advance: Callable[[int], None] = lambda _n: None,
) -> ScenarioResult:
    """Check the scenario's variants agree, then time `iterations` alternated runs of each.

    With several clients, each runs its own alternation on its own connections at the same time and
    `iterations` is split between them; the timings are pooled.
    Raises OperationError when the variants disagree (see Scenario.check).
    """
    variants = scenario.variants()
    with variant_connections(target, variants) as conns:
        scenario.check(conns, connect=target.connect)
    per_client = [iterations // clients + (1 if c < iterations % clients else 0) for c in range(clients)]
    samples: dict[str, list[int]] = {v.name: [] for v in variants}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def client_main(client: int, conns: dict[str, Any]) -> None:
        local: dict[str, list[int]] = {v.name: [] for v in variants}
        try:
            _client_loop(scenario, conns, client, clients, warmup, per_client[client], local, advance)
        except BaseException as exc:
            errors.append(exc)
        with lock:
            for name, values in local.items():
                samples[name].extend(values)

    gc.collect()
    with contextlib.ExitStack() as stack:
        all_conns = [stack.enter_context(variant_connections(target, variants)) for _ in range(clients)]
        if clients == 1:
            client_main(0, all_conns[0])
        else:
            threads = [
                threading.Thread(target=client_main, args=(c, all_conns[c]), name=f"bench-client-{c}")
                for c in range(clients)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    if errors:
        raise errors[0]
    baseline = samples[variants[0].name]
    paired = {
        v.name: percentile(sorted(b / o for b, o in zip(baseline, samples[v.name], strict=True) if o > 0), 50)
        for v in variants[1:]
    }
    return ScenarioResult(
        name=scenario.name,
        summary=scenario.summary,
        baseline=variants[0].name,
        variants={name: Summary.of(values) for name, values in samples.items()},
        notes=list(scenario.notes),
        paired=paired,
    )
