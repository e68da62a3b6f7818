"""`pgtool refresh-mv`."""

from __future__ import annotations

from typing import Annotated

import typer

from pgtool.cli.options import Dsn, LockTimeout, Pushgateway


def refresh_mv(
    views: Annotated[
        list[str] | None,
        typer.Argument(help="Materialized views to refresh (name or schema.name).", show_default=False),
    ] = None,
    all_views: Annotated[
        bool, typer.Option("--all", help="Refresh every materialized view in the database.")
    ] = False,
    allow_blocking: Annotated[
        bool,
        typer.Option(
            "--allow-blocking",
            help="Refresh views without a usable unique index with a plain REFRESH (blocks their readers).",
        ),
    ] = False,
    lock_timeout: LockTimeout = "5s",
    dsn: Dsn = None,
    pushgateway: Pushgateway = None,
) -> None:
    """Refresh materialized views concurrently, skipping ones being refreshed.

    Each view: REFRESH MATERIALIZED VIEW CONCURRENTLY (reads go on), a plain refresh only if it was never
    populated. A view another run is refreshing is skipped at once (exit 0). A view without a unique index
    is reported with the fix (exit 1) unless --allow-blocking. Works through PgBouncer transaction pooling.

    Example: pgtool refresh-mv --dsn "$PGTOOL_DSN" --all --lock-timeout 5s
    """
    from pgtool.cli.options import settings
    from pgtool.cli.runner import run_command

    cfg = settings(dsn, pushgateway)

    def body(_report: object) -> int:
        import sys

        from pgtool.errors import UsageError
        from pgtool.pg.conn import connect
        from pgtool.schema import matviews
        from pgtool.schema.locks import check_lock_timeout

        if bool(views) == all_views:
            raise UsageError("name the views to refresh, or pass --all (not both)")
        timeout = check_lock_timeout(lock_timeout)
        # pin="transaction": refresh-mv works through PgBouncer in transaction pooling mode, where a
        # session-level search_path would stay on the pooled server connection for its next client;
        # schema.matviews pins it inside each of its transactions instead.
        with connect(cfg.dsn, pin="transaction") as conn:
            targets = (
                matviews.list_views(conn) if all_views else matviews.resolve_views(conn, list(views or []))
            )
            outcomes = matviews.refresh(conn, targets, allow_blocking=allow_blocking, lock_timeout=timeout)
        if cfg.pushgateway:
            matviews.push_view_metrics(cfg.pushgateway, outcomes)
        for o in outcomes:
            line = f"{o.outcome:<19} {o.view}" + (
                f"  {o.seconds:.2f}s" if o.ok and o.outcome != "skipped" else ""
            )
            print(line + (f"  ({o.detail})" if o.detail else ""), file=sys.stdout)
        if not outcomes:
            print("no materialized views", file=sys.stdout)
        return 0 if all(o.ok for o in outcomes) else 1

    run_command("refresh-mv", body, pushgateway=cfg.pushgateway)
