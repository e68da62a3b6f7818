"""Archiving ahead (`archive-wal --ahead N`, issue 18): while PostgreSQL asks for one segment, upload the
segments it has already marked ready after it, in parallel, so a remote repository keeps up with a busy
primary instead of paying a process start and several round trips per 16 MiB.

What holds:
- Never early. The segment PostgreSQL asked for exits 0 only once the store acknowledged it. A segment
  uploaded ahead gets a marker `pg_wal/.pgtool-ahead/<name>` (its SHA-256 and the repository) written
  after the store acknowledged it; its own call later exits 0 only if the marker's SHA-256 equals the
  file PostgreSQL hands over AND the object is in the repository now (one HEAD). Anything else falls
  back to the normal path (one conditional create, which compares content if the name is taken).
- Never tamper or drop. PostgreSQL's `archive_status/*.ready` files are only read, never renamed or
  deleted; a follower that fails a check (header, system identifier, split brain) or an upload is just
  not uploaded ahead: its own call reports the problem, and PostgreSQL keeps the segment until then.
- Bounded. At most `ahead` followers (capped so that followers take at most MAX_AHEAD_BYTES of memory),
  uploaded by as many threads; no local copy of any segment; markers are a few bytes each and removed
  when consumed or when their segment has left pg_wal.
"""

from __future__ import annotations

import contextlib
import hashlib
import os

from pgtool import durable_write as durable
from pgtool.repo import RepoError
from pgtool.repo import layout as repo_layout
from pgtool.wal.archive import CorruptArchiveError
from pgtool.wal.archiving import check_segment_fd, refuse_past_fork
from pgtool.wal.errors import WalCommandError
from pgtool.wal.names import SEGMENT, WalName, parse_wal_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

    from pgtool.repo.store import Store
    from pgtool.wal.repo_archive import RepoWal

MARKER_DIR = ".pgtool-ahead"
MAX_AHEAD_BYTES = 256 * 1024 * 1024


def _marker_dir(wal_path: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(wal_path)), MARKER_DIR)


def _marker_text(data: bytes, url: str) -> str:
    return f"{hashlib.sha256(data).hexdigest()} {url}\n"


def confirm(store: Store, url: str, wal_path: str, wal_name: str, data: bytes) -> bool:
    """True when `wal_name` was uploaded ahead with exactly `data` and is in the repository now.

    The marker is consumed either way: a stale or foreign one never answers twice.
    """
    marker = os.path.join(_marker_dir(wal_path), wal_name)
    try:
        with open(marker, encoding="utf-8") as f:
            recorded = f.read()
    except OSError:
        return False
    with contextlib.suppress(OSError):
        os.unlink(marker)
    if recorded != _marker_text(data, url):
        return False
    return store.head(repo_layout.wal_name(wal_name)) is not None


class Batch:
    """Followers of one segment being uploaded ahead; `finish` waits and writes their markers."""

    def __init__(self, wal_path: str, url: str) -> None:
        self.wal_path = wal_path
        self.url = url
        self.pool: ThreadPoolExecutor | None = None
        self.pending: dict[str, tuple[Future[bool], bytes]] = {}
        self.uploaded: list[str] = []
        self.failed: list[str] = []

    def finish(self) -> None:
        if self.pool is None:
            return
        directory = _marker_dir(self.wal_path)
        for name, (future, data) in self.pending.items():
            try:
                future.result()
            except (RepoError, OSError) as exc:
                self.failed.append(f"{name}: {exc}")
                continue
            # The store acknowledged the object: now, and only now, the marker may say so.
            try:
                os.makedirs(directory, exist_ok=True)
                tmp, fd = durable.create_temp(directory, name)
                try:
                    os.write(fd, _marker_text(data, self.url).encode())
                finally:
                    os.close(fd)
                os.replace(tmp, os.path.join(directory, name))
                self.uploaded.append(name)
            except OSError as exc:
                self.failed.append(f"{name}: marker not written: {exc.strerror or exc}")
        self.pool.shutdown()


def followers(wal_path: str, wal: WalName, seg_size: int, ahead: int) -> list[str]:
    """Segments after `wal` on its timeline that PostgreSQL marked ready and no marker covers yet."""
    pg_wal = os.path.dirname(os.path.abspath(wal_path))
    try:
        ready = [e[: -len(".ready")] for e in os.listdir(os.path.join(pg_wal, "archive_status"))]
    except OSError:
        return []
    try:
        marked = set(os.listdir(os.path.join(pg_wal, MARKER_DIR)))
    except OSError:
        marked = set()
    mine = wal.segno(seg_size)
    found = []
    for name in ready:
        try:
            other = parse_wal_name(name)
        except ValueError:
            continue
        later = other.kind == SEGMENT and other.timeline == wal.timeline and other.segno(seg_size) > mine
        if later and name not in marked:
            found.append((other.segno(seg_size), name))
    limit = max(0, min(ahead, MAX_AHEAD_BYTES // seg_size))
    return [name for _segno, name in sorted(found)[:limit]]


def start(
    archive: RepoWal,
    url: str,
    wal_path: str,
    wal: WalName,
    sysid: int,
    seg_size: int,
    fork: tuple[int, int] | None,
    ahead: int,
    compress: bool,
) -> Batch:
    """Start uploading the followers of `wal` (checked like any segment); never raises for them."""
    batch = Batch(wal_path, url)
    names = followers(wal_path, wal, seg_size, ahead)
    if not names:
        return batch
    pg_wal = os.path.dirname(os.path.abspath(wal_path))
    from concurrent.futures import ThreadPoolExecutor  # here: most calls have no follower to upload

    batch.pool = ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="pgtool-ahead")
    for name in names:
        path = os.path.join(pg_wal, name)
        try:
            data = _checked_follower(path, name, sysid, seg_size, fork, archive.display)
        except (WalCommandError, OSError, CorruptArchiveError) as exc:
            batch.failed.append(f"{name}: {exc}")
            continue
        obj = repo_layout.wal_name(name)
        batch.pending[name] = (
            batch.pool.submit(archive.repo.put_if_absent, obj, data, compress=compress),
            data,
        )
    return batch


def _checked_follower(
    path: str, name: str, sysid: int, seg_size: int, fork: tuple[int, int] | None, where: str
) -> bytes:
    wal = parse_wal_name(name)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        their_sysid, their_size = check_segment_fd(f.fileno(), size, path, name, wal)
        if their_sysid != sysid or their_size != seg_size:
            raise CorruptArchiveError(f"{path} is not of the same database system or segment size")
        refuse_past_fork(wal, seg_size, fork, where)
        return f.read()


def forget_stale_markers(wal_path: str) -> None:
    """Remove markers whose segment has left pg_wal (archived, then recycled by PostgreSQL)."""
    directory = _marker_dir(wal_path)
    try:
        names = os.listdir(directory)
    except OSError:
        return
    pg_wal = os.path.dirname(directory)
    for name in names:
        if not os.path.exists(os.path.join(pg_wal, name)):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, name))
