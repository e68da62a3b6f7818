"""`pgtool top`."""

from __future__ import annotations

from typing import Annotated

import typer

from pgtool.cli.options import FORMAT, Dsn, TextFormat, TopOrder, choice, optional


def top(
    dsn: Dsn = None,
    by: Annotated[
        TopOrder,
        choice("--by", help="Sort by mean time, total time, I/O time or calls."),
    ] = TopOrder.mean,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10000, help="Statements to show.")] = 50,
    database: Annotated[
        str | None,
        optional("--database", help="Only statements run in this database (default: all)."),
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="Print one snapshot and exit.")] = False,
    output_format: Annotated[TextFormat, FORMAT] = TextFormat.text,
    interval: Annotated[
        float, typer.Option("--interval", min=0.2, help="Seconds between refreshes on a terminal.")
    ] = 2.0,
) -> None:
    """The slowest statements from pg_stat_statements, as Grafana shows them, in the terminal.

    On a terminal the table refreshes every --interval seconds until Ctrl-C.

    With --once, --format json (one JSON snapshot), or stdout not a terminal: one snapshot.

    The queryid finds the statement's auto_explain plan in the server log.

    Example: pgtool top --dsn postgresql://monitor@db/app --by total --limit 20 --once
    """
    from pgtool.cli.runner import run_command

    def body(_report: object) -> int:
        import shutil
        import sys
        import time

        from pgtool.cli.options import settings
        from pgtool.pg.conn import connect
        from pgtool.top.render import CLEAR, render_json, render_text
        from pgtool.top.snapshot import take_snapshot

        order = by.value
        json_out = output_format is TextFormat.json
        live = not json_out and not once and sys.stdout.isatty()
        cfg = settings(dsn)
        with connect(cfg.dsn, autocommit=True, application_name="pgtool-top") as conn:
            snapshot = take_snapshot(conn, order, limit, database)
            if json_out:
                sys.stdout.write(render_json(snapshot))
                return 0
            if not live:
                sys.stdout.write(render_text(snapshot, width=shutil.get_terminal_size((160, 40)).columns))
                return 0
            # Ctrl-C is how a refreshing view ends: wherever it lands (a query is cancelled), the
            # runner turns it into exit 130, as for every interrupted command.
            try:
                while True:
                    width = shutil.get_terminal_size((160, 40)).columns
                    sys.stdout.write(CLEAR + render_text(snapshot, width=width))
                    sys.stdout.write(f"\nrefreshing every {interval:g}s, Ctrl-C to quit\n")
                    sys.stdout.flush()
                    time.sleep(interval)
                    snapshot = take_snapshot(conn, order, limit, database)
            except KeyboardInterrupt:
                sys.stdout.write("\n")
                sys.stdout.flush()
                raise

    run_command("top", body)
