"""`pgtool report`."""

from __future__ import annotations

from typing import Annotated

import typer

from pgtool.cli.options import FORMAT, Dsn, ReportFormat, optional


def report(
    name: Annotated[
        str, typer.Argument(help="sales, turnover or top-customers.", show_default=True)
    ] = "sales",
    replica_dsn: Annotated[
        str | None,
        optional(
            "--replica-dsn",
            envvar="PGTOOL_REPLICA_DSN",
            help="Read from this replica; falls back to the primary (--dsn), with a warning, "
            "if it does not answer within 5 s.",
        ),
    ] = None,
    # auto: table on a terminal, else json.
    output_format: Annotated[ReportFormat, FORMAT] = ReportFormat.auto,
    days: Annotated[int, typer.Option("--days", help="sales: days shown, ending at the newest day.")] = 30,
    limit: Annotated[
        int,
        typer.Option("--limit", help="top-customers, turnover: ranks shown (ties share one)."),
    ] = 10,
    schema: Annotated[
        str, typer.Option("--schema", help="Schema holding the sample schema's materialized views.")
    ] = "public",
    dsn: Dsn = None,
) -> None:
    """Reports from the materialized views: sales, turnover, top-customers.

    sales: daily revenue with rolling 7- and 30-day averages. turnover: 30-day inventory turnover per
    category. top-customers: customers by total spent, DENSE_RANK() ties. Runs on the replica
    (application_name pgtool-reporting) when --replica-dsn is given.

    Example: pgtool report top-customers --dsn "$PGTOOL_DSN" --replica-dsn "$REPLICA_DSN" --format csv
    """
    from pgtool.cli.options import settings
    from pgtool.cli.runner import run_command

    cfg = settings(dsn)

    def body(_report: object) -> int:
        import sys

        from pgtool.errors import UsageError
        from pgtool.schema import reporting

        fmt = output_format
        if fmt is ReportFormat.auto:
            fmt = ReportFormat.table if sys.stdout.isatty() else ReportFormat.json
        if name not in reporting.REPORTS:
            raise UsageError(f"unknown report {name!r}", hint=f"one of: {', '.join(reporting.REPORTS)}")
        conn, source = reporting.reporting_connection(cfg.dsn, replica_dsn)
        with conn:
            columns, rows = reporting.run_report(conn, name, days=days, limit=limit, schema=schema)
        render = {
            ReportFormat.table: reporting.to_table,
            ReportFormat.json: reporting.to_json,
            ReportFormat.csv: reporting.to_csv,
        }[fmt]
        text = render(columns, rows)
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        from pgtool.obs.logging import get_logger

        get_logger().info("report done", report=name, rows=len(rows), source=source)
        return 0

    run_command("report", body)
