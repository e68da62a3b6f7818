"""`pgtool bench` end to end: target, schema and seed, round-trip time, then each scenario measured.

    result = run_bench(BenchOptions(dsn="", scenarios=["order_create_20"], iterations=300))

Nothing is left behind: the throwaway cluster (no DSN) or the bench schema (DSN) is removed in a
`finally`, also on Ctrl-C and on errors.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from pgtool.bench.machine import describe
from pgtool.bench.runner import ScenarioResult
from pgtool.bench.stats import Summary
from pgtool.errors import UsageError

if TYPE_CHECKING:
    from pgtool.obs.metrics import RunReport

DEFAULT_ITERATIONS = 300
DEFAULT_WARMUP = 30
DEFAULT_SCALE = 5.0
DEFAULT_SEED = 42
MAX_CLIENTS = 64


@dataclass
class BenchOptions:
    """What to run. An empty `dsn` means: start a throwaway local cluster."""

    dsn: str = ""
    scenarios: list[str] = field(default_factory=list)  # empty: all
    iterations: int = DEFAULT_ITERATIONS
    warmup: int = DEFAULT_WARMUP
    clients: int = 1
    scale: float = DEFAULT_SCALE
    seed: int = DEFAULT_SEED
    pg_bindir: str | None = None
    via_pgbouncer: bool = False

    def validate(self) -> list[str]:
        """Raise UsageError for bad values; return the scenario names to run, in run order."""
        from pgtool.bench.scenarios import NAMES

        if self.iterations < 1:
            raise UsageError(f"--iterations must be at least 1, got {self.iterations}")
        if self.warmup < 0:
            raise UsageError(f"--warmup must not be negative, got {self.warmup}")
        if not 1 <= self.clients <= MAX_CLIENTS:
            raise UsageError(f"--clients must be between 1 and {MAX_CLIENTS}, got {self.clients}")
        if self.via_pgbouncer and self.dsn:
            raise UsageError(
                "--via-pgbouncer runs its own PgBouncer in front of a throwaway cluster",
                hint="drop --dsn (and PGTOOL_DSN / DATABASE_URL), or point --dsn at your own PgBouncer",
            )
        if not self.scale > 0:
            raise UsageError(f"--scale must be positive, got {self.scale:g}")
        unknown = [s for s in self.scenarios if s not in NAMES]
        if unknown:
            raise UsageError(f"unknown scenario {', '.join(unknown)}", hint=f"choose from {', '.join(NAMES)}")
        return [n for n in NAMES if not self.scenarios or n in self.scenarios]


@dataclass
class BenchResult:
    server_version: str
    target: str
    rtt: Summary
    scenarios: list[ScenarioResult]
    settings: dict[str, Any]
    machine: dict[str, Any]
    started_at: str
    duration_s: float
    skipped: dict[str, str] = field(default_factory=dict)


def prepare_data(conn: Any, scale: float, seed: int) -> None:
    """The sample schema and its seed data, in the connection's (bench) schema."""
    from pgtool import sample

    sample.apply_schema(conn)
    sample.seed(conn, scale=scale, seed=seed)


def run_bench(
    options: BenchOptions, *, report: RunReport | None = None, progress_stream: TextIO | None = None
) -> BenchResult:
    """Run the selected scenarios and return their measurements.

    report: gets the round trip and each scenario's speedup as gauges (docs/metrics.md).

    Raises UsageError for bad options, ConnectError when the DSN cannot be reached, OperationError when
    the target cannot be prepared or a scenario's variants disagree.
    """
    from pgtool.bench.progress import Progress
    from pgtool.bench.runner import measure, measure_rtt
    from pgtool.bench.scenarios import by_name
    from pgtool.bench.target import open_target
    from pgtool.obs.logging import get_logger

    names = options.validate()
    log = get_logger()
    started = time.monotonic()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    machine = describe()
    results: list[ScenarioResult] = []
    skipped: dict[str, str] = {}
    with open_target(options.dsn, pg_bindir=options.pg_bindir, via_pgbouncer=options.via_pgbouncer) as target:
        with target.connect_direct() as conn:
            log.info("seeding the sample data", scale=options.scale, schema=target.schema)
            prepare_data(conn, options.scale, options.seed)
        rtt = measure_rtt(target)
        log.info("round trip measured", rtt_p50_ms=round(rtt.p50_ms, 4))
        for name in names:
            scenario = by_name(name)(scale=options.scale, clients=options.clients)
            if target.pooled and scenario.needs_session:
                skipped[name] = "needs server-side prepared statements, which PgBouncer 1.18 cannot carry"
                log.warning("scenario skipped", scenario=name, reason=skipped[name])
                continue
            with target.connect_direct() as conn:
                scenario.setup(conn)
            progress = Progress(name, options.iterations, stream=progress_stream)
            result = measure(
                scenario,
                target,
                iterations=options.iterations,
                warmup=options.warmup,
                clients=options.clients,
                advance=progress.advance,
            )
            progress.finish(f"{result.speedup:.2f}x ({result.best})")
            with target.connect_direct() as conn:
                scenario.teardown(conn)
            log.info("scenario measured", scenario=name, speedup=round(result.speedup, 3), best=result.best)
            results.append(result)
        server_version = target.server_version
        where = "throwaway local cluster" if target.local_cluster else "given database, own schema"
        if target.pooled:
            where += " via PgBouncer (transaction mode, prepare_threshold=None)"
    machine["load_average_end"] = describe()["load_average"]
    if report is not None:
        report.gauge("pgtool_bench_rtt_seconds", "Round trip of SELECT 1 (p50)", rtt.p50_ms / 1000)
        for r in results:
            report.gauge(
                "pgtool_bench_speedup",
                "p50 of baseline / p50 of best optimized variant",
                r.speedup,
                scenario=r.name,
            )
    return BenchResult(
        server_version=server_version,
        target=where,
        rtt=rtt,
        scenarios=results,
        settings={
            "iterations": options.iterations,
            "warmup": options.warmup,
            "clients": options.clients,
            "scale": options.scale,
            "seed": options.seed,
            "via_pgbouncer": options.via_pgbouncer,
            "scenarios": names,
        },
        machine=machine,
        started_at=started_at,
        duration_s=round(time.monotonic() - started, 1),
        skipped=skipped,
    )
