"""Lint a long file list on two cores without changing a single finding.

Files are linted in order sharing one `RunState`, so the second half depends on what the first half
established. The second half is linted speculatively in a forked process, starting from an empty run
state that records every key a rule or the state tracking looked up. Meanwhile this process lints
the first half. The speculative result is exact unless one of the recorded keys is present in the
first half's final state (a fact the second half would have seen); then the second half is linted
again here, in order, from the true state. The fork is not an external binary (pgtool.pg.command
is for those): it shares the already imported parser, which a fresh interpreter would spend longer
importing than the work it saves.

benchdata/lint.md records what it saves.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from pgtool.lint.context import RunState

if TYPE_CHECKING:
    from pgtool.lint.engine import LintResult
    from pgtool.lint.settings import LintSettings

MIN_FILES = 200  # below this, forking costs more than it saves
# This process also unpickles the other half's findings and writes the whole report: it takes less.
FIRST_SHARE = 0.45  # 1,000 files in process: median 0.19-0.20 s against 0.22-0.24 s at 0.5
K = TypeVar("K")
V = TypeVar("V")
Lookups = set[tuple[str, Any]]


class _WatchedDict(dict[K, V]):
    """A dict that records the keys read from it (get, in, [], pop).

    `setdefault` is not a read: the state tracking uses it only to append (`checks`), and what it
    appended is read back through `get`, which records.
    """

    def __init__(self, name: str, log: Lookups) -> None:
        super().__init__()
        self._name = name
        self._log = log

    def get(self, key: K, default: Any = None) -> Any:
        self._log.add((self._name, key))
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self._log.add((self._name, key))
        return super().__contains__(key)

    def __getitem__(self, key: K) -> V:
        self._log.add((self._name, key))
        return super().__getitem__(key)

    def pop(self, key: K, *default: Any) -> Any:
        self._log.add((self._name, key))
        return super().pop(key, *default)


class _WatchedSet(set[K]):
    """A set that records the members it is asked about."""

    def __init__(self, name: str, log: Lookups) -> None:
        super().__init__()
        self._name = name
        self._log = log

    def __contains__(self, key: object) -> bool:
        self._log.add((self._name, key))
        return super().__contains__(key)


def recording_state(log: Lookups) -> RunState:
    """An empty RunState whose every lookup lands in `log` as (field, key)."""
    return RunState(
        functions=_WatchedDict("functions", log),
        not_null_checks=_WatchedSet("not_null_checks", log),
        checks=_WatchedDict("checks", log),
        not_valid=_WatchedDict("not_valid", log),
        partition_keys=_WatchedDict("partition_keys", log),
    )


def conflicts(log: Iterable[tuple[str, Any]], state: RunState) -> bool:
    """True when a recorded lookup names a key `state` holds: the answer could have differed."""
    return any(key in getattr(state, name) for name, key in log)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def use_two(paths: list[str], jobs: int | None) -> bool:
    if jobs is not None:
        return jobs >= 2 and len(paths) >= 2 and hasattr(os, "fork")
    return len(paths) >= MIN_FILES and hasattr(os, "fork") and available_cores() >= 2


def _split(paths: list[str]) -> int:
    """Index that halves the bytes to read (a missing file counts as empty; reading will say why)."""
    sizes = []
    for path in paths:
        try:
            sizes.append(os.stat(path).st_size)
        except OSError:
            sizes.append(0)
    half = sum(sizes) * FIRST_SHARE
    total = 0
    for index, size in enumerate(sizes):
        total += size
        if total >= half:
            return max(1, min(index + 1, len(paths) - 1))
    return len(paths) // 2


LintEach = Callable[["list[str]", "LintSettings", RunState, "LintResult", "set[str] | None"], None]


def lint_two(
    paths: list[str],
    settings: LintSettings,
    report: set[str] | None,
    run: RunState,
    result: LintResult,
    lint_each: LintEach,
    new_result: Callable[[], LintResult],
) -> None:
    """Lint `paths` into `result` like `lint_each` would, the second half in a forked process."""
    import pickle

    cut = _split(paths)
    first, second = paths[:cut], paths[cut:]
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: lint the second half, send the result, leave without cleanup
        os.close(read_fd)
        payload = b""
        try:
            log: Lookups = set()
            part = new_result()
            lint_each(second, settings, recording_state(log), part, report)
            payload = pickle.dumps((part, log), protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException:  # the parent redoes the work and meets the error itself
            payload = b""
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(payload)
        os._exit(0)
    os.close(write_fd)
    try:
        lint_each(first, settings, run, result, report)
        with os.fdopen(read_fd, "rb") as pipe:
            data = pipe.read()
    except BaseException:
        _reap(pid, kill=True)
        raise
    _reap(pid, kill=False)
    speculative = pickle.loads(data) if data else None  # noqa: S301 - our own child's bytes
    if speculative is None or conflicts(speculative[1], run):
        lint_each(second, settings, run, result, report)
        return
    part = speculative[0]
    result.files += part.files
    result.context_files += part.context_files
    result.findings.extend(part.findings)
    result.suppressed.extend(part.suppressed)


def _reap(pid: int, *, kill: bool) -> None:
    import contextlib
    import signal

    if kill:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
