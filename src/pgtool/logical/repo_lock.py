"""One `pgtool backup` at a time per repository: the object `dumps/backup.lock`.

A backup directory uses an flock, which the kernel releases when the process dies. An object store has
no such thing, so the lock is an object created with a conditional create (`put_if_absent`: exactly one
of two concurrent creators wins) holding the holder's host, pid and start time, deleted at the end.

A holder that dies without deleting it (OOM kill, node loss) leaves the lock behind. The next run
treats it as stale, deletes it and takes its own:
- at once, when the holder ran on this host and its pid no longer exists;
- otherwise once it is older than `STALE_AFTER` (12 hours; a backup that runs longer could overlap
  with a run that starts after that).
Taking over a stale lock is a delete then a conditional create: two runs that both find the same stale
lock could both proceed, a race that needs two runs started within one request's time of each other
12 hours after a crash. `encode_db` never produces a '.', so no database's prefix is `dumps/backup.lock`.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from pgtool.errors import LockBusyError
from pgtool.obs.logging import get_logger
from pgtool.repo import ObjectDiffers, RepoError, Repository
from pgtool.repo.layout import DUMPS

LOCK_OBJECT = f"{DUMPS}/backup.lock"
STALE_AFTER = timedelta(hours=12)
POLL_SECONDS = 5.0


def _describe(holder: dict[str, object] | None) -> str:
    if not holder:
        return "an unreadable lock"
    return f"host {holder.get('host')} pid {holder.get('pid')} since {holder.get('started_at')}"


def _read(repo: Repository) -> dict[str, object] | None:
    try:
        data = json.loads(repo.read_bytes(LOCK_OBJECT))
    except (RepoError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _stale(holder: dict[str, object] | None, now: datetime) -> bool:
    if holder is None:
        return False  # unreadable (damaged, or deleted meanwhile): never taken over on a guess
    started = holder.get("started_at")
    try:
        since = datetime.fromisoformat(str(started))
    except ValueError:
        return False
    if now - since > STALE_AFTER:
        return True
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        try:
            os.kill(int(str(holder["pid"])), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    return False


def _try_create(repo: Repository, mine: bytes) -> bool:
    """True if the lock is now ours (created, or already there with our exact content: a retried
    request whose first answer was lost)."""
    try:
        repo.put_if_absent(LOCK_OBJECT, mine)
    except ObjectDiffers:
        return False
    return True


@contextlib.contextmanager
def repo_lock(repo: Repository, *, wait: bool = False, what: str = "pgtool backup") -> Iterator[None]:
    """Hold the repository's backup lock for the block; LockBusyError (or wait, polling) if it is held."""
    log = get_logger()
    started = datetime.now(UTC)
    mine = json.dumps(
        {"host": socket.gethostname(), "pid": os.getpid(), "started_at": started.isoformat()}
    ).encode()
    waited = False
    while not _try_create(repo, mine):
        holder = _read(repo)
        if _stale(holder, datetime.now(UTC)):
            where, who = repo.where(LOCK_OBJECT), _describe(holder)
            log.warning("stale backup lock taken over", lock=where, holder=who)
            repo.delete(LOCK_OBJECT)
            continue
        if not wait:
            raise LockBusyError(
                f"another {what} is running on {repo.url.display()} ({_describe(holder)})",
                hint=f"wait for it to finish, or pass --wait; a lock older than {STALE_AFTER} is taken "
                f"over, or delete {LOCK_OBJECT} if you know its holder is gone",
            )
        if not waited:
            log.info("waiting for lock", lock=repo.where(LOCK_OBJECT), holder=_describe(holder))
            waited = True
        time.sleep(POLL_SECONDS)
    try:
        yield
    finally:
        with contextlib.suppress(RepoError):
            if _read(repo) == json.loads(mine):
                repo.delete(LOCK_OBJECT)
