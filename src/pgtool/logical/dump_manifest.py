"""The JSON manifest and `.sha256` file written beside every logical dump, and durable file writes.

Manifest (`<database>-<stamp>.manifest.json`):
    format            "pgtool-dump-manifest", version 1
    database          the database the dump is of (verify checks it against the dump's own TOC)
    dump_file, stamp  the dump's file name and UTC stamp
    started_at, finished_at (ISO 8601 UTC), duration_seconds
    server_version, server_version_num, pg_dump_version
    dump_size_bytes, database_size_bytes, sha256
    database_encoding the database's encoding (verify restores into a database of the same one)
    tables            [{"schema", "name", "rows"}]: exact row counts taken in the dump's own snapshot
    database_properties  owner, acl, settings, comment of the database, read in the same snapshot
                      (`pgtool.logical.db_properties`; absent in manifests of older versions)

Names are stored as read in the database's encoding; bytes that are not valid text there (SQL_ASCII)
are JSON `\\udcXX` escapes of lone surrogates (`pgtool.logical.dump_sessions`).

Verified record (`<database>-<stamp>.verified.json`, written by `pgtool verify` after a drill passed):
    format "pgtool-dump-verified", version 1, dump_file, sha256, verified_at, tables, rows
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pgtool.errors import OperationError

MANIFEST_FORMAT = "pgtool-dump-manifest"
VERIFIED_FORMAT = "pgtool-dump-verified"
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
    from pgtool.durable_write import write_via_temporary

    try:
        write_via_temporary(path, data)
    except OSError as exc:
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


def build_manifest(
    database: str,
    dump_file: str,
    stamp: str,
    started_at: datetime,
    duration: float,
    *,
    server_version: str,
    server_version_num: int,
    pg_dump_version: str,
    size: int,
    db_size: int,
    encoding: str,
    digest: str,
    counts: list[dict[str, Any]],
    properties: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest of one dump (the fields above but format and version)."""
    return {
        "database": database,
        "dump_file": dump_file,
        "stamp": stamp,
        "started_at": started_at.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "duration_seconds": duration,
        "server_version": server_version,
        "server_version_num": server_version_num,
        "pg_dump_version": pg_dump_version,
        "dump_format": "custom",
        "dump_size_bytes": size,
        "database_size_bytes": db_size,
        "database_encoding": encoding,
        "sha256": digest,
        "tables": counts,
        **({"database_properties": properties} if properties is not None else {}),
    }


def manifest_document(manifest: dict[str, Any]) -> bytes:
    """The bytes of a manifest as stored (a file beside the dump, or a repository object)."""
    document = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, **manifest}
    return (json.dumps(document, indent=2, sort_keys=False) + "\n").encode()


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    write_durably(path, manifest_document(manifest))


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
    if not isinstance(tables, list) or not all(map(_valid_table, tables)):
        raise OperationError(
            f"manifest {path.name} has no valid table list "
            "(each entry: schema and name strings, rows a count)"
        )
    return document


def _valid_table(entry: object) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("schema"), str)
        and isinstance(entry.get("name"), str)
        and type(entry.get("rows")) is int  # not a bool, a float or a string
        and entry["rows"] >= 0
    )


def write_verified(path: Path, record: dict[str, Any]) -> None:
    """The durable record that a drill restored this dump (`dumps.is_verified` reads it)."""
    document = {"format": VERIFIED_FORMAT, "version": 1, **record}
    write_durably(path, (json.dumps(document, indent=2) + "\n").encode())
    from pgtool.durable_write import fsync_path

    fsync_path(path.parent, directory=True)
