"""The one place where pgtool's exceptions become exit codes and the run's summary is logged.

Every command body runs through `run_command`: it configures logging, times the run, logs exactly one
summary event ("run finished" / "run failed") with command, outcome and duration, pushes the run's
metrics when a Pushgateway is configured, and exits with the documented code. A traceback appears only
at debug level, and never with local variables (they may hold DSNs). SIGTERM and SIGINT end the body
with `Terminated` (exit 130) after reaching every child process, whichever thread started it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from pgtool.errors import EXIT_FAILED, EXIT_OK, FindingsError, PgtoolError

if TYPE_CHECKING:
    from pgtool.config import Settings
    from pgtool.obs.metrics import RunReport

EXIT_INTERRUPTED = 130


def setup_logging() -> None:
    from pgtool.cli.state import STATE
    from pgtool.obs.logging import configure

    configure(STATE.log_level, json=STATE.log_json)


def usage_failure(exc: PgtoolError) -> NoReturn:
    """End a run that failed before its body started (bad configuration): one "run failed" line."""
    from pgtool.cli.state import STATE
    from pgtool.obs.logging import get_logger

    setup_logging()
    get_logger().bind(command=STATE.command or "pgtool").error(
        "run failed", outcome="error", exit_code=exc.exit_code, duration_s=0.0, error=exc.one_line()
    )
    raise SystemExit(exc.exit_code)


def run_command(
    command: str,
    body: Callable[[RunReport], int | None],
    *,
    pushgateway: str | None = None,
    metrics_job: str | None = None,
) -> NoReturn:
    """Run `body(report)` and exit.

    body receives a `RunReport` to add gauges to and returns None/0 for success or an exit code.
    Outcomes: success; findings (a non-zero return, or FindingsError: lint findings, an unhealthy
    status, a dump or base backup that failed its drill; its message in `error`); error (any other
    exception: "run failed").
    metrics_job overrides the Pushgateway job suffix (e.g. "verify-base"); default `command`.
    """
    setup_logging()
    from pgtool.obs.logging import get_logger
    from pgtool.obs.metrics import RunReport, push_run_result
    from pgtool.pg.terminate import sigterm_raises

    log = get_logger().bind(command=command)
    report = RunReport()
    start = time.monotonic()
    code = EXIT_FAILED
    error: str | None = None
    findings: str | None = None
    try:
        # SIGTERM (a pod stop) unwinds like Ctrl-C, for every command: children are signalled,
        # secret files removed, finally-blocks run, and the run still logs and pushes its outcome.
        with sigterm_raises():
            result = body(report)
        code = EXIT_OK if result is None else int(result)
    except FindingsError as exc:  # the command ran and found problems (a failed drill): not an error
        code = exc.exit_code
        findings = exc.one_line()
    except PgtoolError as exc:
        code = exc.exit_code
        error = exc.one_line()
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
        error = "interrupted"
    except Exception as exc:  # a bug: one line for the user, the traceback only at debug level
        code = EXIT_FAILED
        error = f"unexpected error: {type(exc).__name__}: {exc}"
        log.debug("traceback", exc_info=True)
    duration = round(time.monotonic() - start, 3)
    if pushgateway:
        push_run_result(
            pushgateway,
            metrics_job or command,
            success=code == EXIT_OK,
            duration_seconds=duration,
            report=report,
        )
    if findings is not None:
        log.warning("run finished", outcome="findings", exit_code=code, duration_s=duration, error=findings)
    elif error is None:
        outcome = "success" if code == EXIT_OK else "findings"
        log.info("run finished", outcome=outcome, exit_code=code, duration_s=duration)
    else:
        log.error("run failed", outcome="error", exit_code=code, duration_s=duration, error=error)
    sys.stdout.flush()
    raise SystemExit(code)


def run_with_binaries(
    command: str,
    body: Callable[[RunReport], int | None],
    cfg: Settings,
    *,
    metrics_job: str | None = None,
) -> NoReturn:
    """`run_command` for a command that starts PostgreSQL binaries (backup, basebackup, verify).

    The binary probes start first, in the background, so they run while the body's imports load;
    the run's result goes to the resolved Pushgateway.
    """

    def prefetched(report: RunReport) -> int | None:
        from pgtool.pg.binaries import prefetch

        prefetch(cfg.pg_bindir)
        return body(report)

    run_command(command, prefetched, pushgateway=cfg.pushgateway, metrics_job=metrics_job)
