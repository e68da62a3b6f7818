"""`pgtool lint`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pgtool.cli.options import FORMAT, LintFormat, optional


def lint(
    paths: Annotated[
        list[str],
        typer.Argument(
            help="Migration files or directories (directories: *.sql except *.down.sql, sorted).",
            metavar="PATH",
            show_default=False,
        ),
    ],
    output_format: Annotated[LintFormat, FORMAT] = LintFormat.text,
    pg_version: Annotated[
        int | None,
        optional("--pg-version", help="PostgreSQL major the migrations run on (default: config, else 18)."),
    ] = None,
    config: Annotated[
        Path | None,
        optional("--config", help="pgtool.toml or pyproject.toml to read (default: found upward from here)."),
    ] = None,
    rules: Annotated[
        list[str] | None,
        optional("--rules", help="Run only these rules (comma-separated ids, repeatable)."),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        optional("--exclude", help="Skip a rule (MIG027) or paths matching a glob (legacy/*); repeatable."),
    ] = None,
    max_file_size: Annotated[
        str | None,
        optional("--max-file-size", help="Refuse files larger than this (default 8MB; e.g. 64MB)."),
    ] = None,
    assume_in_transaction: Annotated[
        bool | None,
        optional(
            "--assume-in-transaction/--no-assume-in-transaction",
            help="The migration runner wraps each file in a transaction (default: config, else no).",
        ),
    ] = None,
    since: Annotated[
        str | None,
        optional(
            "--since",
            metavar="GIT_REF",
            help="Report only files changed since this git revision (REF...HEAD, plus uncommitted and "
            "untracked files); older files are still read for the facts they establish.",
        ),
    ] = None,
    rehearse: Annotated[
        str | None,
        optional(
            "--rehearse",
            metavar="DSN",
            help="Also apply the files to a throwaway copy of DSN's database (CREATE DATABASE ... "
            "TEMPLATE: no other session may be connected to it) and report each statement's locks, "
            "rewrite, duration, WAL and blocked probe queries against the prediction. Pass the "
            "password through PGPASSWORD or ~/.pgpass.",
        ),
    ] = None,
) -> None:
    """Lint SQL migrations for operationally unsafe DDL (locks, rewrites, failed CONCURRENTLY).

    Exit 0: no error-level finding; 1: findings, a file that does not parse, or (--rehearse) a
    mismatch or a failed statement; 2: usage error; 3: cannot connect.

    Example: pgtool lint migrations/ --format github --pg-version 15 --since origin/main
    """
    from pgtool.cli.runner import run_command

    rehearse_dsn = None
    if rehearse is not None:
        from pgtool.cli.options import settings

        rehearse_dsn = settings(dsn=rehearse).dsn  # warns of a password on argv, checks the DSN

    def body(_report: object) -> int:
        import sys

        from pgtool.lint.run import run_lint

        return run_lint(
            paths,
            output_format=output_format.value,
            pg_version=pg_version,
            config=config,
            rules=rules or [],
            exclude=exclude or [],
            max_file_size=max_file_size,
            assume_in_transaction=assume_in_transaction,
            since=since,
            rehearse=rehearse_dsn,
            out=sys.stdout,
        )

    run_command("lint", body)
