"""The local half of archiving ahead (issue 18), stdlib only: the markers and claims in
`pg_wal/.pgtool-ahead/` through which an archive-wal call learns that its segment was already uploaded
by the uploader running ahead (`pgtool.wal.repo_ahead`), without importing the repository client.

- A **marker** `<name>` is written (temporary, then rename) by whoever received the store's
  acknowledgement of the upload, and only then. It holds the SHA-256 of the bytes uploaded, the
  repository URL and where the object is. A call trusts it only when the SHA-256 equals the file
  PostgreSQL hands over now, the URL is the call's own, and it is younger than MARKER_MAX_AGE; it is
  consumed either way, so a stale or foreign marker never answers twice. This is the trust
  pgBackRest's archive-async gives its `.ok` files; what the marker adds is the content hash.
- A **claim** `.claim-<name>` is an flock held while a segment is being uploaded, by the uploader or by
  a call. A call whose segment is claimed waits (bounded) for the claim to go, then looks for the
  marker again: one upload per segment instead of two. The kernel drops a dead holder's lock, so a
  killed uploader never blocks anyone. Correctness never rests on a claim: two uploads of one segment
  meet in the store's conditional create (identical content: both succeed).
- The uploader itself holds `.uploader` locked while it runs: at most one per pg_wal.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import time

from pgtool import durable_write as durable

MARKER_DIR = ".pgtool-ahead"
CLAIM_PREFIX = ".claim-"
UPLOADER_LOCK = ".uploader"
# A marker older than this is not trusted (the full path runs: a conditional create that finds the
# object). Markers are normally consumed within seconds; the bound keeps a long-stalled archiver from
# trusting state from before, say, a repository was replaced under the same URL.
MARKER_MAX_AGE = 600.0
# How long a call waits for the upload that holds its segment's claim, before uploading it itself.
CLAIM_WAIT = 120.0
_POLL = 0.005


def marker_dir(pg_wal: str) -> str:
    return os.path.join(pg_wal, MARKER_DIR)


def pg_wal_of(wal_path: str) -> str:
    """The pg_wal directory of %p, as given (not resolved: pg_wal may be a symlink)."""
    return os.path.dirname(os.path.abspath(wal_path))


def marker_text(digest: str, url: str, where: str) -> str:
    return f"{digest}\n{url}\n{where}\n"


def write_marker(pg_wal: str, name: str, digest: str, url: str, where: str) -> None:
    """Record that the store acknowledged `name` (call only after it did). OSError if it cannot.

    Never creates pg_wal itself: after the cluster was removed, writing fails instead of recreating it.
    Not fsynced: a marker lost in a crash only means the segment's call uploads again.
    """
    directory = marker_dir(pg_wal)
    with contextlib.suppress(FileExistsError):
        os.mkdir(directory, 0o700)
    tmp, fd = durable.create_temp(directory, name)
    try:
        try:
            os.write(fd, marker_text(digest, url, where).encode())
        finally:
            os.close(fd)
        os.replace(tmp, os.path.join(directory, name))
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def take_marker(pg_wal: str, name: str, data: bytes, url: str) -> str | None:
    """Where the object is, if a trusted marker says `name` was uploaded with exactly `data` to `url`;
    else None. The marker is removed either way."""
    path = os.path.join(marker_dir(pg_wal), name)
    try:
        with open(path, encoding="utf-8") as f:
            age = time.time() - os.fstat(f.fileno()).st_mtime
            lines = f.read().split("\n")
    except (OSError, UnicodeDecodeError):
        return None
    with contextlib.suppress(OSError):
        os.unlink(path)
    if len(lines) != 4 or lines[3] or not 0 <= age <= MARKER_MAX_AGE or lines[1] != url:
        return None
    if lines[0] != hashlib.sha256(data).hexdigest():
        return None
    return lines[2]


def try_lock(path: str) -> int | None:
    """An fd holding an exclusive flock on `path` (created if needed), or None if another holds it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    return fd


def claim_path(pg_wal: str, name: str) -> str:
    return os.path.join(marker_dir(pg_wal), CLAIM_PREFIX + name)


def try_claim(pg_wal: str, name: str) -> int | None:
    """Claim `name` for an upload: an fd to close when done, or None if someone else is uploading it."""
    directory = marker_dir(pg_wal)
    with contextlib.suppress(FileExistsError, FileNotFoundError):
        os.mkdir(directory, 0o700)
    return try_lock(claim_path(pg_wal, name))


def wait_claim(pg_wal: str, name: str, timeout: float = CLAIM_WAIT) -> int | None:
    """Claim `name`, waiting up to `timeout` s for an upload in progress to finish; None on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        fd = try_claim(pg_wal, name)
        if fd is not None or time.monotonic() >= deadline:
            return fd
        time.sleep(_POLL)


def release(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # drops the flock; the claim file stays until its segment leaves pg_wal


_HELD: list[int] = []


def hold(fd: int | None) -> None:
    """Keep a claim until this process exits (the kernel then drops it)."""
    if fd is not None:
        _HELD.append(fd)


def uploader_running(pg_wal: str) -> bool:
    fd = try_lock(os.path.join(marker_dir(pg_wal), UPLOADER_LOCK))
    if fd is None:
        return os.path.isdir(marker_dir(pg_wal))
    os.close(fd)
    return False


def confirm(wal_path: str, name: str, url: str) -> tuple[str, int, float] | None:
    """(where, size, seconds waited) when `name` was uploaded ahead, waiting for an upload of it in
    progress; None when the call must upload it itself (it takes its own claim in repo_archive)."""
    if len(name) != 24 or not name.isalnum():
        return None  # not a segment (a history or backup file): never uploaded ahead
    pg_wal = pg_wal_of(wal_path)
    if not os.path.isdir(marker_dir(pg_wal)):
        return None  # nothing was ever uploaded ahead here
    try:
        with open(wal_path, "rb") as f:
            data = f.read()
    except OSError:
        return None  # the full path reports it
    where = take_marker(pg_wal, name, data, url)
    waited = 0.0
    if where is None:
        started = time.monotonic()
        fd = wait_claim(pg_wal, name)
        release(fd)  # the upload that held it has ended, one way or the other
        waited = time.monotonic() - started
        where = take_marker(pg_wal, name, data, url)
    return None if where is None else (where, len(data), waited)


def forget_stale(pg_wal: str) -> None:
    """Remove markers and claim files whose segment has left pg_wal (archived, then recycled)."""
    directory = marker_dir(pg_wal)
    try:
        names = os.listdir(directory)
    except OSError:
        return
    with contextlib.suppress(OSError):
        durable.remove_stale_temporaries(directory)  # markers of a killed writer
    for entry in names:
        name = entry[len(CLAIM_PREFIX) :] if entry.startswith(CLAIM_PREFIX) else entry
        if name.startswith(".") or os.path.exists(os.path.join(pg_wal, name)):
            continue
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(directory, entry))
