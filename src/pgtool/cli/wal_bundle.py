"""`pgtool wal-bundle`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def wal_bundle(
    path: Annotated[Path, typer.Argument(help="File to write (its directory must exist).")],
) -> None:
    """Write archive-wal and restore-wal as one self-contained file that python3 >= 3.11 runs.

    For servers that do not carry pgtool's venv (the official postgres image, the file copied in by an
    init container): archive_command = 'python3 /pgtool/pgtool-wal.pyz archive-wal %p %f --archive-dir
    /wal-archive'. Stdlib only: compressed archives need zstandard / lz4 in that interpreter.

    Example: pgtool wal-bundle /pgtool/pgtool-wal.pyz
    """
    from pgtool.cli.runner import run_command

    def body(_report: object) -> int:
        from pgtool.errors import UsageError
        from pgtool.wal_bundle import write_bundle

        if not path.parent.is_dir():
            raise UsageError(f"{path.parent} is not a directory", hint="create it first")
        written = write_bundle(path)
        print(written)
        return 0

    run_command("wal-bundle", body)
