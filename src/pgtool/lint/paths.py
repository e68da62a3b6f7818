"""Which files a lint run reads: files as given, directories expanded to their migrations."""

from __future__ import annotations

import errno
import os
from fnmatch import fnmatch
from pathlib import Path

from pgtool.errors import UsageError


def is_migration(name: str) -> bool:
    """`*.sql` files that are not down migrations (`*.down.sql`, diesel's `down.sql`)."""
    lower = name.lower()
    return lower.endswith(".sql") and not lower.endswith(".down.sql") and lower != "down.sql"


def _excluded(path: str, patterns: list[str]) -> bool:
    normal = os.path.normpath(path)
    return any(
        fnmatch(normal, p) or fnmatch(path, p) or fnmatch(os.path.basename(normal), p) for p in patterns
    )


def _check_exists(given: str) -> None:
    """UsageError naming why `given` cannot be followed: missing, a symlink loop, unreadable."""
    try:
        os.stat(given)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UsageError(f"path {given} is a symbolic link loop") from None
        if exc.errno == errno.ENOENT:
            if os.path.islink(given):
                raise UsageError(f"path {given} is a symbolic link to a missing file") from None
            raise UsageError(f"path {given} does not exist") from None
        raise UsageError(f"cannot read {given}: {exc.strerror}") from None


def expand(paths: list[str], exclude: list[str]) -> list[str]:
    """Files to lint, in order: each path's files (directories recursively, sorted), no duplicates.

    A path that does not exist is a UsageError. Hidden directories are skipped.
    """
    files: list[str] = []
    seen: set[str] = set()
    for given in paths:
        path = Path(given)
        _check_exists(given)
        if path.is_dir():
            found: list[str] = []
            for root, dirs, names in os.walk(path):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                found.extend(os.path.join(root, n) for n in names if is_migration(n))
            candidates = sorted(found)
        else:
            candidates = [given]  # reading refuses what is not a regular file
        for candidate in candidates:
            if candidate in seen or _excluded(candidate, exclude):
                continue
            seen.add(candidate)
            files.append(candidate)
    return files
