"""The JSON manifest and `.sha256` file written beside every logical dump, and durable file writes.

Manifest (`<database>-<stamp>.manifest.json`):
    format            "pgtool-dump-manifest", version 1
    database          the database the dump is of (verify checks it against the dump's own TOC)
    dump_file, stamp  the dump's file name and UTC stamp
    started_at, finished_at (ISO 8601 UTC), duration_seconds
    server_version, server_version_num, pg_dump_version
    dump_size_bytes, database_size_bytes, sha256
    tables            [{"schema", "name", "rows"}]: exact row counts taken in the dump's own snapshot
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pgtool.errors import OperationError

MANIFEST_FORMAT = "pgtool-dump-manifest"
MANIFEST_VERSION = 1
_CHUNK = 1024 * 1024


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_durably(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a hidden temporary file, fsync, rename (the caller fsyncs the dir)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise OperationError(f"cannot write {path}: {exc.strerror or exc}") from None


def checksum_line(digest: str, file_name: str) -> str:
    """A line `sha256sum -c` accepts."""
    return f"{digest}  {file_name}\n"


def read_checksum(path: Path) -> str | None:
    """The hex digest in a `.sha256` file, or None if it is missing or malformed."""
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    digest = text.split()[0] if text else ""
    if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest.lower()):
        return digest.lower()
    return None


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    document = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, **manifest}
    write_durably(path, (json.dumps(document, indent=2, sort_keys=False) + "\n").encode())


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest at `path`; OperationError naming the problem if it is missing or unreadable."""
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise OperationError(f"manifest missing ({path.name})") from None
    except (OSError, ValueError) as exc:
        raise OperationError(f"manifest unreadable ({path.name}: {exc})") from None
    if not isinstance(document, dict) or document.get("format") != MANIFEST_FORMAT:
        raise OperationError(f"manifest {path.name} is not a pgtool dump manifest")
    tables = document.get("tables")
    if not isinstance(tables, list) or not all(
        isinstance(t, dict) and {"schema", "name", "rows"} <= set(t) for t in tables
    ):
        raise OperationError(f"manifest {path.name} has no valid table list")
    return document
