"""Console-script entry point.

`archive-wal` and `restore-wal` run once per WAL segment from PostgreSQL's archiver/startup process:
they bypass Typer entirely (its import alone costs more than copying a segment) and go to a
stdlib-only parser in `pgtool.wal.fastcli`.
"""

from __future__ import annotations

import os
import sys

FAST_COMMANDS = ("archive-wal", "restore-wal")


def main(argv: list[str] | None = None) -> int:
    """Run pgtool; the exit code. Called without argv (the console script), it ends the process."""
    if argv is None:
        _exit_now(_main(sys.argv[1:]))
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


def _exit_now(code: int) -> None:
    """Exit with `code` without tearing the interpreter down.

    Finalizing the modules psycopg and Typer bring in takes ~35 ms after the run's work is done, on
    every CronJob run. The exit handlers still run (weakref finalizers, thread pools, temporary
    directories), output is flushed, and a non-daemon thread still running gets the normal exit.
    """
    import atexit

    # Not imported by the per-segment path (3 ms there): then no other thread can exist either.
    threading = sys.modules.get("threading")
    if threading is not None and any(
        t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()
    ):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            code = code or 120  # output was lost (a closed pipe): what Python's own exit returns
    os._exit(code)
