"""Console-script entry point.

`archive-wal` and `restore-wal` run once per WAL segment from PostgreSQL's archiver/startup process:
they bypass Typer entirely (its import alone costs more than copying a segment) and go to a
stdlib-only parser in `pgtool.wal.fastcli`.
"""

from __future__ import annotations

import sys

FAST_COMMANDS = ("archive-wal", "restore-wal")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] in FAST_COMMANDS:
        from pgtool.wal.fastcli import main as fast_main

        return fast_main(args)
    from pgtool.cli.app import app

    try:
        app(args=args, prog_name="pgtool")
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    return 0
