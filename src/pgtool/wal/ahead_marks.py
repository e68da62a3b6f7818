"""The local half of archiving ahead (issue 18), stdlib only: the markers and claims in
`pg_wal/.pgtool-ahead/` through which an archive-wal call learns that its segment was already uploaded
by the uploader running ahead (`pgtool.wal.repo_ahead`), without importing the repository client.

- A **marker** `<name>` is written (temporary, then rename) by whoever received the store's
  acknowledgement of the upload, and only then. It holds the SHA-256 of the bytes uploaded, the
  repository's `identity` (location resolved, key file) and where the object is. A call trusts it only
  when the SHA-256 equals the file PostgreSQL hands over now, the identity is the call's own, and it is
  younger than MARKER_MAX_AGE; it is consumed either way, so a stale or foreign marker never answers
  twice. This is the trust
  pgBackRest's archive-async gives its `.ok` files; what the marker adds is the content hash.
- A **claim** `.claim-<name>` is an flock held while a segment is being uploaded, by the uploader or by
  a call. A call whose segment is claimed waits (bounded) for the claim to go, then looks for the
  marker again: one upload per segment instead of two. The kernel drops a dead holder's lock, so a
  killed uploader never blocks anyone. Correctness never rests on a claim: two uploads of one segment
  meet in the store's conditional create (identical content: both succeed).
- The uploader itself holds `.uploader` locked while it runs: at most one per pg_wal. `.wanted` holds
  the identity the calls archive into now; an uploader for another one (archive_command was reloaded
  with another repository or key) stops taking work.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import time

from pgtool import durable_write as durable

MARKER_DIR = ".pgtool-ahead"
CLAIM_PREFIX = ".claim-"
UPLOADER_LOCK = ".uploader"
WANTED = ".wanted"
# A marker older than this is not trusted (the full path runs: a conditional create that finds the
# object). The uploader runs at most a few dozen segments ahead, so markers are consumed within seconds;
# the bound keeps a stalled archiver from trusting state from before, say, a repository was replaced.
MARKER_MAX_AGE = 120.0
# How long a call waits for the upload that holds its segment's claim, before uploading it itself.
CLAIM_WAIT = 120.0
_POLL = 0.005
# Set by pgtool's archive module (archive_library) in the environment of the calls it runs, so that the
# uploader they start answers that module for that command only (`pgtool.wal.ahead_socket`).
MODULE_COMMAND_ENV = "PGTOOL_ARCHIVE_MODULE_COMMAND"


def identity(url: str, key_file: str | None) -> str:
    """What a marker must match besides the bytes: the repository as resolved from the caller's working
    directory (PostgreSQL runs archive_command in the data directory; the uploader runs in /), and the
    key file by path and identity (inode, size, mtime: a new key at the same path differs; its content,
    the secret, is never hashed into a file)."""
    if url.startswith(("s3://", "azure://")):
        where = url
    else:
        where = os.path.abspath(url[len("file://") :] if url.startswith("file://") else url)
    if not key_file:
        return where
    path = os.path.abspath(key_file)
    try:
        st = os.stat(path)
        key = f"{path}@{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        key = f"{path}@?"
    return f"{where} key={key}"


def marker_dir(pg_wal: str) -> str:
    return os.path.join(pg_wal, MARKER_DIR)


def pg_wal_of(wal_path: str) -> str:
    """The pg_wal directory of %p, as given (not resolved: pg_wal may be a symlink)."""
    return os.path.dirname(os.path.abspath(wal_path))


def marker_text(digest: str, ident: str, where: str) -> str:
    return f"{digest}\n{ident}\n{where}\n"


def write_marker(pg_wal: str, name: str, digest: str, ident: str, where: str) -> None:
    """Record that the store acknowledged `name` (call only after it did). OSError if it cannot.

    Never creates pg_wal itself: after the cluster was removed, writing fails instead of recreating it.
    Not fsynced: a marker lost in a crash only means the segment's call uploads again.
    """
    directory = marker_dir(pg_wal)
    try:  # noqa: SIM105 - contextlib is not imported on the per-segment path
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    tmp, fd = durable.create_temp(directory, name)
    try:
        try:
            os.write(fd, marker_text(digest, ident, where).encode())
        finally:
            os.close(fd)
        os.replace(tmp, os.path.join(directory, name))
    except OSError:
        _unlink(tmp)
        raise


def take_marker(pg_wal: str, name: str, digest: str, ident: str) -> str | None:
    """Where the object is, if a trusted marker says `name` was uploaded with exactly the bytes of SHA-256
    `digest` to the repository `ident` (`identity`); else None. The marker is removed either way."""
    path = os.path.join(marker_dir(pg_wal), name)
    try:
        with open(path, encoding="utf-8") as f:
            age = time.time() - os.fstat(f.fileno()).st_mtime
            lines = f.read().split("\n")
    except (OSError, UnicodeDecodeError):
        return None
    _unlink(path)
    if len(lines) != 4 or lines[3] or not 0 <= age <= MARKER_MAX_AGE or lines[1] != ident:
        return None
    if lines[0] != digest:
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
    try:  # noqa: SIM105 - contextlib is not imported on the per-segment path
        os.mkdir(directory, 0o700)
    except (FileExistsError, FileNotFoundError):
        pass
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


def confirm(wal_path: str, name: str, ident: str, wait: float = CLAIM_WAIT) -> tuple[str, int, float] | None:
    """(where, size, seconds waited) when `name` was uploaded ahead, waiting up to `wait` s for an upload
    of it in progress; None when the call must upload it itself (it takes its own claim in repo_archive)."""
    if len(name) != 24 or not name.isalnum():
        return None  # not a segment (a history or backup file): never uploaded ahead
    pg_wal = pg_wal_of(wal_path)
    if not os.path.isdir(marker_dir(pg_wal)):
        return None  # nothing was ever uploaded ahead here
    try:
        digest, size = _sha256_of(wal_path)
    except OSError:
        return None  # the full path reports it
    where = take_marker(pg_wal, name, digest, ident)
    waited = 0.0
    if where is None:
        started = time.monotonic()
        fd = wait_claim(pg_wal, name, wait)
        release(fd)  # the upload that held it has ended, one way or the other
        waited = time.monotonic() - started
        where = take_marker(pg_wal, name, digest, ident)
    return None if where is None else (where, size, waited)


def _sha256_of(path: str) -> tuple[str, int]:
    """SHA-256 and size of the file, hashed in place (`mapped`)."""
    from pgtool.wal.mapped import mapped

    fd = os.open(path, os.O_RDONLY)
    try:
        data = mapped(fd)
        try:
            return hashlib.sha256(data).hexdigest(), len(data)
        finally:
            if not isinstance(data, bytes):
                data.close()
    finally:
        os.close(fd)


def want(pg_wal: str, ident: str) -> None:
    """Record the repository the calls archive into now (best effort: an uploader for another one stops)."""
    path = os.path.join(marker_dir(pg_wal), WANTED)
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == ident:
                return
    except OSError:
        pass
    try:
        tmp, fd = durable.create_temp(marker_dir(pg_wal), WANTED)
        try:
            os.write(fd, ident.encode())
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        pass


def wanted(pg_wal: str) -> str | None:
    try:
        with open(os.path.join(marker_dir(pg_wal), WANTED), encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None


def forget_stale(pg_wal: str) -> None:
    """Remove markers and claim files whose segment has left pg_wal (archived, then recycled)."""
    directory = marker_dir(pg_wal)
    try:
        names = os.listdir(directory)
    except OSError:
        return
    try:  # noqa: SIM105 - contextlib is not imported on the per-segment path
        durable.remove_stale_temporaries(directory)  # markers of a killed writer
    except OSError:
        pass
    for entry in names:
        name = entry[len(CLAIM_PREFIX) :] if entry.startswith(CLAIM_PREFIX) else entry
        if name.startswith(".") or os.path.exists(os.path.join(pg_wal, name)):
            continue
        _unlink(os.path.join(directory, entry))


def _unlink(path: str) -> None:
    """Remove the file if it is there (contextlib.suppress costs ~3 ms of imports per call)."""
    try:  # noqa: SIM105 - see above
        os.unlink(path)
    except OSError:
        pass
