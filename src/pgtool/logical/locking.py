"""One run at a time per backup directory: an flock on `DIR/.pgtool-backup.lock`.

flock (not a PID file) because the kernel releases it when the process dies, however it dies: a killed
run never leaves a lock that blocks the next CronJob. The holder writes its PID and start time into
the file so the second run can say who holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from pgtool.errors import LockBusyError, OperationError
from pgtool.obs.logging import get_logger


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        return ""
    return f" ({text})" if text else ""


@contextlib.contextmanager
def directory_lock(directory: Path, name: str, *, wait: bool = False, what: str = "run") -> Iterator[Path]:
    """Hold an exclusive lock on `directory/name` for the block.

    wait: block until the lock is free instead of raising LockBusyError at once.
    what: names the kind of run in messages ("pgtool backup").
    """
    path = Path(directory) / name
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise OperationError(f"cannot open lock file {path}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise LockBusyError(
                    f"another {what} is running on {directory}{_holder(path)}",
                    hint="wait for it to finish, or pass --wait to queue behind it",
                ) from None
            get_logger().info("waiting for lock", lock=str(path), holder=_holder(path).strip(" ()"))
            start = time.monotonic()
            fcntl.flock(fd, fcntl.LOCK_EX)
            get_logger().info("lock acquired", lock=str(path), waited_s=round(time.monotonic() - start, 3))
        os.ftruncate(fd, 0)
        os.pwrite(
            fd, f"pid {os.getpid()} since {datetime.now(UTC).isoformat(timespec='seconds')}\n".encode(), 0
        )
        try:
            yield path
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
    finally:
        os.close(fd)
