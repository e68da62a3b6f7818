"""Writing a small file durably through a temporary: the one copy for dump manifests, verified
records and evidence records (the WAL path keeps its own, stdlib-only, in pgtool.wal.durable)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path


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
        with contextlib.suppress(OSError):
            tmp.unlink()
