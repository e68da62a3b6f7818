"""A WAL segment read in place (stdlib only): archive-wal runs once per 16 MiB segment, and reading the
file into a fresh bytes object first (read()) was about a third of the CPU a call spent on its segment."""

from __future__ import annotations

import os

# Not typing.TYPE_CHECKING (~7 ms on the per-segment path). Mypy reads any constant of this name as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from mmap import mmap


def mapped(fd: int) -> mmap | bytes:
    """The open file mapped read-only and pre-faulted (MAP_POPULATE): zstd and hashlib read it from the
    page cache in place. read() where mapping fails (an empty file cannot be mapped)."""
    import mmap

    try:
        populate = getattr(mmap, "MAP_POPULATE", 0)  # Linux
        return mmap.mmap(fd, 0, flags=mmap.MAP_SHARED | populate, prot=mmap.PROT_READ)
    except (OSError, ValueError):
        return os.pread(fd, os.fstat(fd).st_size, 0)
