"""`pgtool demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pgtool.cli.options import PgBindir


def demo(
    keep: Annotated[
        Path | None,
        typer.Option("--keep", help="Keep the cluster and files in this directory and print how to connect."),
    ] = None,
    pg_bindir: PgBindir = None,
) -> None:
    """Run pgtool's whole lifecycle on a throwaway embedded PostgreSQL.

    Example: pgtool demo
    """
    from pgtool.cli.runner import run_command

    def body(_report: object) -> int:
        import sys

        from pgtool.demo.run import run_demo

        results = run_demo(pg_bindir=pg_bindir, keep_dir=keep, out=sys.stdout)
        return 0 if results and all(r.ok for r in results) else 1

    run_command("demo", body)
