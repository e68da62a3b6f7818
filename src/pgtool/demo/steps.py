"""Running demo steps: one line per step with outcome and time, a spinner on a TTY, a summary table."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from pgtool.errors import OperationError
from pgtool.pg import binaries, command


@dataclass
class StepResult:
    name: str
    ok: bool
    seconds: float
    detail: str


@dataclass
class StepRunner:
    """Runs steps in order, printing each outcome; stops at the first failure."""

    out: TextIO
    results: list[StepResult] = field(default_factory=list)

    @property
    def tty(self) -> bool:
        return hasattr(self.out, "isatty") and self.out.isatty()

    @property
    def failed(self) -> bool:
        return any(not r.ok for r in self.results)

    def step(self, name: str, fn: Callable[[], str]) -> bool:
        """Run `fn` (returns a one-line detail, raises on failure) unless an earlier step failed."""
        if self.failed:
            return False
        stop = threading.Event()
        spinner = None
        if self.tty:
            spinner = threading.Thread(target=self._spin, args=(name, stop), daemon=True)
            spinner.start()
        start = time.monotonic()
        try:
            detail, ok = fn(), True
        except KeyboardInterrupt:
            stop.set()
            raise
        except Exception as exc:
            detail, ok = _one_line(getattr(exc, "message", None) or str(exc)), False
        seconds = time.monotonic() - start
        stop.set()
        if spinner is not None:
            spinner.join()
            self.out.write("\r\033[K")
        self.results.append(StepResult(name, ok, seconds, detail))
        mark = (
            ("\033[32mok\033[0m  " if ok else "\033[31mFAIL\033[0m")
            if self.tty
            else ("ok  " if ok else "FAIL")
        )
        print(f"{mark} {name:<30} {seconds:6.1f}s  {detail}", file=self.out, flush=True)
        return ok

    def _spin(self, name: str, stop: threading.Event) -> None:
        frames = "|/-\\"
        i = 0
        start = time.monotonic()
        while not stop.wait(0.1):
            self.out.write(f"\r{frames[i % 4]}    {name:<30} {time.monotonic() - start:6.1f}s")
            self.out.flush()
            i += 1

    def summary(self) -> str:
        """A table of every step, and the total."""
        width = max((len(r.name) for r in self.results), default=10)
        lines = [f"{'step':<{width}}  result  seconds", f"{'-' * width}  ------  -------"]
        for r in self.results:
            lines.append(f"{r.name:<{width}}  {'ok' if r.ok else 'FAILED':<6}  {r.seconds:7.1f}")
        total = sum(r.seconds for r in self.results)
        passed = sum(r.ok for r in self.results)
        lines.append(f"{passed}/{len(self.results)} steps passed in {total:.1f}s")
        return "\n".join(lines)


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]


def run_pgtool(
    args: Sequence[str],
    *,
    ok_codes: Sequence[int] = (0,),
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> command.CommandResult:
    """Run a real `pgtool` command as the user would; raise OperationError with its last line on failure.

    Through `pgtool.pg.command`, so a Ctrl-C reaches the child and is waited for: its own throwaway
    cluster (verify --base) is gone before the demo cleans up.
    """
    result = command.run(
        [binaries.pgtool_executable(), *args],
        env={"PGTOOL_LOG_FORMAT": "json", **(env or {})},
        capture_stdout=True,
        check=False,
        timeout=timeout,
        log_stderr_level="debug",
        what=f"pgtool {args[0]}",
    )
    if result.returncode not in ok_codes:
        stdout = (result.stdout or "").strip().splitlines()
        last = (result.stderr_tail.strip().splitlines() or stdout or ["no output"])[-1]
        raise OperationError(f"pgtool {args[0]} exited {result.returncode}: {_error_of(last)}")
    return result


def _error_of(line: str) -> str:
    import json

    try:
        event = json.loads(line)
    except ValueError:
        return line
    return str(event.get("error") or event.get("event") or line)
