"""Prefetch for `restore-wal --prefetch N` (issue 18): while recovery asks for one segment, fetch the
next ones of its timeline from the repository in parallel into a bounded spool, so replay is not
serialised on one round trip per 16 MiB.

What holds:
- A spooled file is exactly the object of its name, read through the same verification as any read
  (checksum or authentication, the page header against the name, the repository's system identifier,
  the exact segment size) and renamed into the spool only after all of it. Objects are never
  overwritten in a repository, so a name maps to one content for good: a spooled file cannot be stale.
- Recovery asks by name, timeline included; the spool serves only that exact name. When a request
  comes for another timeline, or for a segment before what the spool holds, the spool is emptied: a
  timeline switch never meets segments fetched for the old one.
- Bounded: at most N files of one segment each, in `<pg_wal>/.pgtool-prefetch/`. `pgtool recover`
  removes the spool when recovery ends (recovery_end_command); a spool a crash left behind is
  emptied by the next call.
"""

from __future__ import annotations

import contextlib
import os

from pgtool import durable_write as durable
from pgtool.repo import ObjectAbsent, RepoError
from pgtool.repo import layout as repo_layout
from pgtool.wal.archive import CorruptArchiveError
from pgtool.wal.checksum import verified_chunks
from pgtool.wal.names import SEGMENT, WalName, parse_wal_name, segment_name
from pgtool.wal.restoring import unlink_quietly, write_all

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pgtool.wal.repo_archive import RepoWal

SPOOL_DIR = ".pgtool-prefetch"


class Spool:
    """The prefetch spool beside `dest_path` (pg_wal/.pgtool-prefetch for PostgreSQL's RECOVERYXLOG)."""

    def __init__(self, dest_path: str) -> None:
        self.dir = os.path.join(os.path.dirname(os.path.abspath(dest_path)), SPOOL_DIR)

    def _entries(self) -> list[str]:
        try:
            return os.listdir(self.dir)
        except OSError:
            return []

    def names(self) -> list[str]:
        """Spooled segments (temporaries of fetches in progress or killed start with '.')."""
        return [n for n in self._entries() if not n.startswith(".")]

    def keep_only_after(self, wal: WalName, seg_size: int | None) -> None:
        """Drop spooled files that recovery at `wal` will not ask for: other timelines, earlier ones,
        and temporaries of fetches a killed run left."""
        for name in self._entries():
            try:
                other = parse_wal_name(name)
                keep = (
                    seg_size is not None
                    and other.kind == SEGMENT
                    and other.timeline == wal.timeline
                    and other.segno(seg_size) >= wal.segno(seg_size)
                )
            except ValueError:
                keep = False
            if not keep:
                unlink_quietly(os.path.join(self.dir, name))

    def take(self, name: str, dest_path: str) -> int | None:
        """Move spooled `name` to dest_path (same filesystem); its size, or None when not spooled."""
        path = os.path.join(self.dir, name)
        try:
            size = os.stat(path).st_size
            os.replace(path, dest_path)
        except FileNotFoundError:
            return None
        durable.fsync_path(os.path.dirname(os.path.abspath(dest_path)), directory=True)
        return size


def segment_size_of(path: str) -> int | None:
    from pgtool.wal.header import LONG_HEADER_SIZE, WalHeaderError, parse_long_header

    try:
        with open(path, "rb") as f:
            return parse_long_header(f.read(LONG_HEADER_SIZE)).segment_size
    except (OSError, WalHeaderError):
        return None


def to_fetch(spool: Spool, wal: WalName, seg_size: int, depth: int) -> list[str]:
    """The segments after `wal` a refill would fetch: none until the spool ran at least half empty,
    so that most calls are served from the spool without a single request (nor opening the store)."""
    have = set(spool.names())
    start = wal.segno(seg_size) + 1
    wanted = [segment_name(wal.timeline, n, seg_size) for n in range(start, start + depth)]
    missing = [n for n in wanted if n not in have]
    return missing if len(missing) * 2 >= depth else []


def refill(archive: RepoWal, spool: Spool, missing: list[str], system_id: int | None) -> int:
    """Fetch the `missing` segments (`to_fetch`) into the spool, in parallel; return how many landed."""
    if not missing:
        return 0
    os.makedirs(spool.dir, exist_ok=True)
    from concurrent.futures import ThreadPoolExecutor  # here: archive-wal imports this module too

    with ThreadPoolExecutor(max_workers=len(missing), thread_name_prefix="pgtool-prefetch") as pool:
        results = list(pool.map(lambda n: _fetch(archive, spool, n, system_id), missing))
    return sum(results)


def _fetch(archive: RepoWal, spool: Spool, name: str, system_id: int | None) -> bool:
    """One segment into the spool, verified before it gets its name; False when absent or bad (its own
    restore-wal call then meets the problem and reports it)."""
    wal = parse_wal_name(name)
    obj = repo_layout.wal_name(name)
    tmp = None
    try:
        tmp, fd = durable.create_temp(spool.dir, name)
        try:
            chunks = archive.repo.open(obj)
            for chunk in verified_chunks(chunks, wal, None, system_id, archive.where(obj)):
                write_all(fd, chunk)
        finally:
            os.close(fd)
        os.replace(tmp, os.path.join(spool.dir, name))
        tmp = None
        return True
    except (ObjectAbsent, RepoError, CorruptArchiveError, OSError):
        return False
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
