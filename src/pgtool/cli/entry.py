"""Console-script entry point.

`archive-wal` and `restore-wal` run once per WAL segment from PostgreSQL's archiver/startup process:
they bypass Typer entirely (its import alone costs more than copying a segment) and go to a
stdlib-only parser in `pgtool.wal.fastcli`. The process then exits the ordinary way: interpreter
teardown costs a few milliseconds on jobs that run once a day, and skipping it (os._exit after a private
atexit call) also skipped every finalizer that is not an atexit hook.
"""

from __future__ import annotations

import sys

FAST_COMMANDS = ("archive-wal", "restore-wal")


def main(argv: list[str] | None = None) -> int:
    """Run pgtool; the exit code. Called without argv (the console script), it ends the process."""
    if argv is None:
        sys.exit(_main(sys.argv[1:]))
    return _main(list(argv))


def _main(args: list[str]) -> int:
    if args and args[0] in FAST_COMMANDS:
        from pgtool.wal.fastcli import main as fast_main

        return fast_main(args)
    from pgtool.cli.app import build

    try:
        build(args)(args=args, prog_name="pgtool")
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    return 0
