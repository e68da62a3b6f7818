"""Console-script entry point.

`archive-wal` and `restore-wal` run once per WAL segment from PostgreSQL's archiver/startup process:
they bypass Typer entirely (its import alone costs more than copying a segment) and go to a
stdlib-only parser in `pgtool.wal.fastcli`. The process then exits the ordinary way: interpreter
teardown costs a few milliseconds on jobs that run once a day, and skipping it (os._exit after a private
atexit call) also skipped every finalizer that is not an atexit hook.
"""

from __future__ import annotations

import sys

# Not typing.TYPE_CHECKING: this module starts archive-wal too, where importing typing costs ~7 ms.
# Mypy reads any constant of this name as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol

    class _ClickError(Protocol):
        """What pgtool uses of click's ClickException and UsageError."""

        exit_code: int
        ctx: Any

        def show(self) -> None: ...

        def format_message(self) -> str: ...


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
    import signal

    # A shell starts `cmd &` with SIGINT ignored, and Python keeps it so. The runner installs its own
    # handler, but only after the imports below: restore the default now, so a Ctrl-C (or the demo's
    # and tests' SIGINT) that arrives while they load still ends the run with 130, never silently lost.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        from pgtool.cli.app import build
    except KeyboardInterrupt:
        return _interrupted_while_starting()

    try:
        # Not standalone (except `pgtool` alone, which shows the help): a bad option or choice comes
        # back here, to be reported as the one "run failed" line of every other pgtool error (JSON
        # when not on a terminal) instead of click's usage box, which broke the JSON-lines contract.
        code = build(args)(args=args, prog_name="pgtool", standalone_mode=not args)
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    except Exception as exc:
        # click's exceptions, matched by name: Typer 0.28 vendors click as typer._click, older
        # Typers use click itself, and neither exports UsageError.
        from typing import cast

        kinds = {cls.__name__ for cls in type(exc).__mro__}
        if "UsageError" in kinds:
            return _usage_error(cast("_ClickError", exc))
        if "ClickException" in kinds:
            cast("_ClickError", exc).show()
            return cast("_ClickError", exc).exit_code
        if "Abort" in kinds:
            print("Aborted!", file=sys.stderr)
            return 1
        raise
    # The exit code of --help, --version or typer.Exit; a command that returned normally gives None.
    return code if isinstance(code, int) else 0


def _interrupted_while_starting() -> int:
    """A signal before the runner took over (pgtool was still importing): one line, exit 130."""
    import json

    if sys.stderr.isatty():
        print("pgtool: interrupted while starting", file=sys.stderr)
    else:
        print(
            json.dumps({"event": "run failed", "outcome": "interrupted", "exit_code": 130}), file=sys.stderr
        )
    return 130


def _usage_error(exc: _ClickError) -> int:
    """Report a command-line usage error as one "run failed" line; its exit code (2)."""
    from pgtool.cli.runner import usage_failure
    from pgtool.errors import UsageError

    where = exc.ctx.command_path if exc.ctx is not None else "pgtool"
    try:
        usage_failure(UsageError(exc.format_message(), hint=f"see {where} --help"))
    except SystemExit as done:
        return int(done.code or 0)
    return 2
