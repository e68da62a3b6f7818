"""`pgtool partitions`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from pgtool.cli.options import Dsn, LockTimeout, Pushgateway, optional

if TYPE_CHECKING:
    from pgtool.obs.metrics import RunReport


def partitions(
    table: Annotated[str, optional("--table", help="The range-partitioned table, SCHEMA.TABLE.")],
    ahead: Annotated[int, typer.Option("--ahead", help="Months past the current one to keep created.")] = 3,
    since: Annotated[
        str | None,
        optional("--since", help="First month to create, YYYY-MM (default: the current month)."),
    ] = None,
    retention_months: Annotated[
        int | None,
        optional(
            "--retention-months",
            help="Detach (or with --drop, drop) partitions whose range ended before the month N months ago.",
        ),
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", help="Retention detaches old partitions (default).")
    ] = False,
    drop: Annotated[bool, typer.Option("--drop", help="Retention drops old partitions.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the DDL it would run; change nothing.")
    ] = False,
    lock_timeout: LockTimeout = "10s",
    dsn: Dsn = None,
    pushgateway: Pushgateway = None,
) -> None:
    """Keep monthly range partitions created ahead, with optional retention.

    Partitions are named <table>_pYYYY_MM, bounded at UTC midnights, created standalone and ATTACHed
    (no ACCESS EXCLUSIVE on the parent); rows waiting in the DEFAULT partition move into the new partition
    in the same transaction. Safe to run again or concurrently (advisory lock): a second run changes nothing.

    Example: pgtool partitions --dsn "$PGTOOL_DSN" --table public.orders --ahead 3

    Pre-provision 18 months once: pgtool partitions --table public.orders --ahead 17
    """
    from pgtool.cli.options import settings
    from pgtool.cli.runner import run_command

    cfg = settings(dsn, pushgateway)

    def body(report: RunReport) -> int:
        import sys

        from pgtool.errors import UsageError
        from pgtool.pg.conn import connect
        from pgtool.schema.locks import check_lock_timeout
        from pgtool.schema.partitions import maintain_partitions, parse_month, plan_window

        if detach and drop:
            raise UsageError("--detach and --drop exclude each other")
        if (detach or drop) and retention_months is None:
            raise UsageError("--detach/--drop need --retention-months N")
        first = parse_month(since) if since else None
        # Absurd --ahead / --retention-months / --since fail here, before connecting (exit 2).
        plan_window(ahead=ahead, since=first, retention_months=retention_months)
        timeout = check_lock_timeout(lock_timeout)
        # pin="transaction": partitions works through PgBouncer in transaction pooling mode, so the
        # search_path is pinned inside each of its transactions (schema.partitions._Run.begin), never for the
        # session (which would leak to the pooled server connection's next client).
        with connect(cfg.dsn, pin="transaction") as conn:
            result = maintain_partitions(
                conn,
                table,
                ahead=ahead,
                since=first,
                retention_months=retention_months,
                drop=drop,
                dry_run=dry_run,
                lock_timeout=timeout,
                report=report,
            )
        out = sys.stdout
        if dry_run:
            for stmt in result.ddl:
                print(stmt, file=out)
            if not result.ddl:
                print(f"-- {result.table}: nothing to do", file=out)
            return 0
        if result.default_created:
            print(f"created  {result.default_created} (DEFAULT)", file=out)
        for name in result.created:
            moved = result.moved_rows.get(name)
            print(
                f"created  {name}" + (f" (moved {moved} rows from the DEFAULT partition)" if moved else ""),
                file=out,
            )
        for name in result.detached:
            print(f"detached {name}", file=out)
        for name in result.dropped:
            print(f"dropped  {name}", file=out)
        for note in result.covered_elsewhere:
            print(f"covered  {note}", file=out)
        print(
            f"{result.table}: {len(result.created)} created, {len(result.in_place)} already in place"
            + (f", {len(result.detached)} detached" if result.detached else "")
            + (f", {len(result.dropped)} dropped" if result.dropped else ""),
            file=out,
        )
        return 0

    run_command("partitions", body, pushgateway=cfg.pushgateway)
