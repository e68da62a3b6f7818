"""The Typer application: the top-level options and the list of commands.

Each command lives in its own module under pgtool.cli; this file only joins them. `build(args)`
registers just the command being run when argv names one: Typer inspects every registered
function's signature and each command module has imports of its own, so registering all fifteen
cost ~40 ms of every CronJob run for nothing. Help, completion and unknown names get them all.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from pgtool import __version__
from pgtool.cli import commands
from pgtool.cli.options import LogFormat, LogLevel, choice
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
    ctx: typer.Context,
    log_level: Annotated[
        LogLevel,
        choice("--log-level", envvar="PGTOOL_LOG_LEVEL", help="Log level."),
    ] = LogLevel.info,
    log_format: Annotated[
        LogFormat,
        choice("--log-format", envvar="PGTOOL_LOG_FORMAT", help="auto: console on a TTY, JSON otherwise."),
    ] = LogFormat.auto,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit."),
    ] = False,
) -> None:
    """Logs go to stderr; results to stdout."""
    STATE.command = ctx.invoked_subcommand
    STATE.log_level = log_level.value
    STATE.log_json = {LogFormat.auto: None, LogFormat.json: True, LogFormat.console: False}[log_format]


# Top-level options that take a value: the token after them is not a command name.
_VALUE_OPTIONS = ("--log-level", "--log-format")


def invoked_command(args: list[str]) -> str | None:
    """The command `args` runs, if it names a registered one (None for help, typos, completion)."""
    if any(name.startswith("_PGTOOL_COMPLETE") for name in os.environ):
        return None
    expect_value = False
    for arg in args:
        if expect_value:
            expect_value = False
        elif arg in _VALUE_OPTIONS:
            expect_value = True
        elif not arg.startswith("-"):
            return arg if arg in commands.NAMES else None
    return None


def build(args: list[str]) -> typer.Typer:
    """The app with the command `args` invokes registered, or every command when that is unclear."""
    commands.register(app, only=invoked_command(args))
    return app
