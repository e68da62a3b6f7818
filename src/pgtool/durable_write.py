"""Durable file writing, the one helper for it (stdlib only: the WAL commands and their bundle use it).

- `create_temp` / `publish` / `fsync_path`: a unique temporary in the target directory, fsync,
  link()/rename() to the final name (never replacing one, for archived WAL), fsync of the directory. A
  crash at any point leaves either no file or the complete file under the final name; at worst a
  temporary (TEMP_PREFIX, the writer's pid and a random part) is left behind, which
  `remove_stale_temporaries` deletes on a later run.
- `write_via_temporary`: a small file (dump manifests, verified records, evidence records) written whole
  through a hidden temporary beside it, then installed with os.replace (overwrite) or os.link (never).
"""

from __future__ import annotations

import errno
import os
import time

# Not typing.TYPE_CHECKING, and no pathlib or contextlib at run time: archive-wal imports this module
# once per WAL segment (tests/wal check its imports). Mypy reads any constant of this name as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

# Temporaries of archive-wal (and of every writer here) start with this; never WAL, never listed.
TEMP_PREFIX = ".pgtool-tmp."

STALE_TEMP_SECONDS = 600.0
FILE_MODE = 0o640


def temp_path(directory: str, name: str) -> str:
    """A fresh temporary path in `directory` for final file `name`: TEMP_PREFIX<name>.<pid>.<random>."""
    return os.path.join(directory, f"{TEMP_PREFIX}{name}.{os.getpid()}.{os.urandom(4).hex()}")


def create_temp(directory: str, name: str) -> tuple[str, int]:
    """Create and open (write-only, O_EXCL) a temporary for `name`; returns (path, fd)."""
    path = temp_path(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    return path, fd


def fsync_path(path: str | os.PathLike[str], *, directory: bool = False) -> None:
    """fsync a file or directory by path (pgtool's one helper for it, stdlib-only for the WAL path)."""
    fd = os.open(path, (os.O_RDONLY | os.O_DIRECTORY) if directory else os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_fd(src: int, dst: int, size: int) -> None:
    """Copy `size` bytes from src (at offset 0) to dst, in the kernel when it can."""
    offset = 0
    try:
        while offset < size:
            # copy_file_range keeps the bytes out of Python (and shares extents on reflink filesystems)
            n = os.copy_file_range(src, dst, size - offset, offset)
            if n == 0:
                break
            offset += n
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.EPERM):
            raise
    while offset < size:
        chunk = os.pread(src, min(1 << 20, size - offset), offset)
        if not chunk:
            break
        os.write(dst, chunk)
        offset += len(chunk)
    if offset != size:
        raise OSError(errno.EIO, f"source ended after {offset} of {size} bytes (file shrank while copying)")


def publish(tmp: str, final: str) -> None:
    """Give the fsynced temporary `tmp` its final name without ever replacing an existing `final`.

    Uses link()+unlink() (fails with FileExistsError when `final` appeared meanwhile); falls back to
    rename() on filesystems without hard links. The caller fsyncs the directory afterwards.
    """
    try:
        os.link(tmp, final)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
            raise
        if os.path.lexists(final):
            raise FileExistsError(errno.EEXIST, "File exists", final) from exc
        os.rename(tmp, final)
        return
    os.unlink(tmp)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(directory: str, *, max_age: float = STALE_TEMP_SECONDS) -> list[str]:
    """Delete temporaries left by killed runs; returns the removed file names.

    A temporary is stale when the process that created it (pid in its name) no longer exists on this
    host, or when it is older than max_age seconds (a writer on another host sharing the directory).
    Removing a live writer's temporary is harmless: its link fails and PostgreSQL retries.
    """
    removed = []
    now = time.time()
    with os.scandir(directory) as entries:
        for entry in entries:
            if not entry.name.startswith(TEMP_PREFIX):
                continue
            try:
                pid = int(entry.name.rsplit(".", 2)[-2])
            except (ValueError, IndexError):
                pid = 0
            try:
                stale = (pid > 0 and pid != os.getpid() and not _pid_alive(pid)) or (
                    now - entry.stat(follow_symlinks=False).st_mtime > max_age
                )
                if stale:
                    os.unlink(entry.path)
                    removed.append(entry.name)
            except FileNotFoundError:
                continue
    return removed


def write_via_temporary(
    path: Path, data: bytes, *, install: Callable[[Path, Path], None] = os.replace, exclusive: bool = False
) -> None:
    """Write `data` to the hidden temporary .<name>.tmp-<pid> beside `path`, fsync it, then
    `install(tmp, path)`: os.replace to overwrite, os.link never to. The temporary never outlives
    the call; `exclusive` refuses a leftover one. The caller fsyncs the directory."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "xb" if exclusive else "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        install(tmp, path)
    finally:
        try:  # noqa: SIM105 - no contextlib on the per-segment import path
            tmp.unlink()
        except OSError:
            pass
