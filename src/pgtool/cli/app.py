"""The Typer application: the top-level options and the list of commands.

Each command lives in its own module under pgtool.cli; this file only joins them.
"""

from __future__ import annotations

from typing import Annotated

import typer

from pgtool import __version__
from pgtool.cli import commands
from pgtool.cli.state import STATE

app = typer.Typer(
    name="pgtool",
    help="Operations toolkit for production PostgreSQL: backups proven by restores, WAL archiving "
    "and point-in-time recovery, schema jobs, a migration linter and benchmarks.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pgtool {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    log_level: Annotated[
        str,
        typer.Option(
            "--log-level",
            metavar="LEVEL",
            envvar="PGTOOL_LOG_LEVEL",
            help="debug, info, warning or error.",
            case_sensitive=False,
        ),
    ] = "info",
    log_format: Annotated[
        str,
        typer.Option(
            "--log-format",
            metavar="FORMAT",
            envvar="PGTOOL_LOG_FORMAT",
            help="auto (console on a TTY, JSON otherwise), json or console.",
            case_sensitive=False,
        ),
    ] = "auto",
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit."),
    ] = False,
) -> None:
    """Logs go to stderr; results to stdout."""
    level = log_level.lower()
    if level not in ("debug", "info", "warning", "error"):
        raise typer.BadParameter("must be debug, info, warning or error", param_hint="--log-level")
    fmt = log_format.lower()
    if fmt not in ("auto", "json", "console"):
        raise typer.BadParameter("must be auto, json or console", param_hint="--log-format")
    STATE.log_level = level
    STATE.log_json = {"auto": None, "json": True, "console": False}[fmt]


commands.register(app)
