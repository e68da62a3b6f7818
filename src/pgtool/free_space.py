"""The one free-space check before pgtool writes something large to local disk (a dump downloaded for a
drill, a directory dump spooled, a base backup downloaded or streamed into PGDATA): fail before the first
byte, with one line saying where, how much and what to do, rather than part-way with ENOSPC."""

from __future__ import annotations

import os
import shutil

from pgtool.errors import OperationError


def require_free(where: str | os.PathLike[str], need: int, doing: str, *, hint: str) -> None:
    """OperationError when the filesystem holding `where` has fewer than `need` bytes free for `doing`
    (a phrase: "to download X")."""
    free = shutil.disk_usage(where).free
    if free < need:
        raise OperationError(
            f"not enough space in {where} {doing}: {_mib(need)} needed, {_mib(free)} free", hint=hint
        )


def _mib(size: int) -> str:
    return f"{size // 2**20} MiB" if size >= 2**20 else f"{size} bytes"
