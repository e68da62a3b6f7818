"""`pgtool bench`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pgtool.cli.options import FORMAT, Dsn, PgBindir, Pushgateway, TextFormat, optional

if TYPE_CHECKING:
    from pgtool.obs.metrics import RunReport


def bench(
    dsn: Dsn = None,
    scenario: Annotated[
        list[str] | None,
        optional(
            "--scenario",
            help="Run only this scenario (repeatable): order_create_20, order_create_5, product_search, "
            "category_filter, low_stock_filter, cart_update, prepared_cache, report_top_products.",
        ),
    ] = None,
    iterations: Annotated[int, typer.Option("--iterations", help="Timed runs per variant.")] = 300,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed runs per variant first.")] = 30,
    clients: Annotated[
        int, typer.Option("--clients", help="Concurrent clients, each alternating the variants.")
    ] = 1,
    scale: Annotated[
        float, typer.Option("--scale", help="Sample data size (1 = 500 products, 10,000 orders).")
    ] = 5.0,
    output_dir: Annotated[
        Path | None,
        optional(
            "--output-dir",
            help="Also write baseline-results.txt, optimized-results.txt and results.json here.",
        ),
    ] = None,
    output_format: Annotated[TextFormat, FORMAT] = TextFormat.text,
    via_pgbouncer: Annotated[
        bool,
        typer.Option(
            "--via-pgbouncer",
            help="Throwaway cluster only: connect through a PgBouncer in transaction mode, as production "
            "traffic does (prepare_threshold=None; prepared_cache is skipped).",
        ),
    ] = False,
    pg_bindir: PgBindir = None,
    pushgateway: Pushgateway = None,
) -> None:
    """Benchmark query rewrites against a real PostgreSQL: baseline and optimized variants alternated.

    No DSN (--dsn, PGTOOL_DSN, DATABASE_URL): a throwaway local cluster, removed afterwards.
    A DSN: a schema of its own in that database, dropped afterwards. See docs/bench.md.

    Example: pgtool bench --iterations 300 --output-dir benchdata/reference
    """
    from pgtool.cli.runner import run_command

    def body(report: RunReport) -> None:
        import json
        import sys

        from pgtool.bench.report import text_report, to_json, write_output_dir
        from pgtool.bench.run import BenchOptions, run_bench
        from pgtool.cli.options import settings

        options = BenchOptions(
            dsn=settings(dsn).dsn,
            scenarios=list(scenario or []),
            iterations=iterations,
            warmup=warmup,
            clients=clients,
            scale=scale,
            pg_bindir=pg_bindir,
            via_pgbouncer=via_pgbouncer,
        )
        options.validate()
        result = run_bench(options, report=report)
        if output_dir is not None:
            write_output_dir(result, output_dir)
        if output_format is TextFormat.json:
            sys.stdout.write(json.dumps(to_json(result), indent=2) + "\n")
        else:
            sys.stdout.write(text_report(result))

    run_command("bench", body, pushgateway=pushgateway)
