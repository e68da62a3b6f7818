"""Where logical dumps live and how to list them: `DIR/<database>/<database>-<UTC stamp>.dump`, or
`.dir/` for a directory-format dump (`pgtool.logical.dump_directory`).

Beside each dump `X.dump` pgtool writes `X.dump.sha256` (sha256sum format) and `X.manifest.json`
(`pgtool.logical.dump_manifest`); `pgtool verify` adds `X.verified.json` once the dump passed a drill
(retention keeps the newest such dump). A dump is *complete* (and *ours*) when its name matches the exact
pattern and its manifest exists and names that file and database. pg_dump writes under a hidden
temporary name (`.X.dump.partial`) that never matches the pattern, so listings and retention never
see, count or delete a dump still being written or left behind by a killed run.

A file stamped more than `FUTURE_SKEW` ahead of the clock (a clock that was wrong, a copied file) is
left out of every listing: it would otherwise pass for the newest dump for as long as the stamp is
ahead. `future_dump_files` names them so callers can warn.

Database names may hold any character; the directory (and file prefix) encodes the few that cannot
appear in a file name (`/`, `%`, a leading `.`, control characters) as `%XX`.

Stdlib only: `pgtool status` imports this to report backup age and size.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_STAMP_RE = r"\d{8}T\d{6}Z"
DUMP_SUFFIX = ".dump"
DIR_SUFFIX = ".dir"  # a directory-format dump (`pg_dump -Fd`): `X.dir/`, its `X.dir.sha256` lists every file
CHECKSUM_SUFFIX = ".dump.sha256"
MANIFEST_SUFFIX = ".manifest.json"
PARTIAL_SUFFIX = ".partial"
VERIFIED_SUFFIX = ".verified.json"
LOCK_FILE = ".pgtool-backup.lock"
FUTURE_SKEW = timedelta(minutes=10)


def encode_name(database: str) -> str:
    """The file-system-safe form of a database name (identity for ordinary names)."""
    out: list[str] = []
    for i, ch in enumerate(database):
        if ch in "/%\\" or ord(ch) < 32 or ord(ch) == 127 or (i == 0 and ch == "."):
            out.extend(f"%{b:02X}" for b in ch.encode())
        else:
            out.append(ch)
    return "".join(out)


def decode_name(encoded: str) -> str:
    """Inverse of `encode_name`."""
    from urllib.parse import unquote

    return unquote(encoded)


def display(text: str) -> str:
    """`text` safe for one line of output: control characters and undecodable bytes (kept as lone
    surrogates, see `pgtool.logical.dump_sessions`) written as Python escapes (`x\\ry`, `\\udce9`)."""
    return "".join(
        ch if ch.isprintable() and not 0xD800 <= ord(ch) <= 0xDFFF else ascii(ch)[1:-1] for ch in text
    )


def format_stamp(when: datetime) -> str:
    """`20261124T163000Z` for a UTC time."""
    return when.astimezone(UTC).strftime(STAMP_FORMAT)


def parse_stamp(stamp: str) -> datetime:
    return datetime.strptime(stamp, STAMP_FORMAT).replace(tzinfo=UTC)


def dump_name(database: str, stamp: str) -> str:
    """`<database>-<stamp>.dump` (database name encoded)."""
    return f"{encode_name(database)}-{stamp}{DUMP_SUFFIX}"


def dir_dump_name(database: str, stamp: str) -> str:
    """`<database>-<stamp>.dir` (database name encoded): a directory-format dump."""
    return f"{encode_name(database)}-{stamp}{DIR_SUFFIX}"


def _stem(dump: Path) -> str:
    """The dump's name without its suffix (`.dump` or `.dir`)."""
    for suffix in (DUMP_SUFFIX, DIR_SUFFIX):
        if dump.name.endswith(suffix):
            return dump.name[: -len(suffix)]
    return dump.name


def dump_size(dump: Path) -> int:
    """A dump's bytes on disk: the file's size, or the sum of a directory dump's files."""
    if dump.is_dir():
        return sum(p.stat().st_size for p in dump.iterdir() if p.is_file())
    return dump.stat().st_size


def database_dir(backup_dir: Path, database: str) -> Path:
    return Path(backup_dir) / encode_name(database)


def checksum_path(dump: Path) -> Path:
    return dump.with_name(dump.name + ".sha256")


def manifest_path(dump: Path) -> Path:
    return dump.with_name(_stem(dump) + MANIFEST_SUFFIX)


def verified_path(dump: Path) -> Path:
    return dump.with_name(_stem(dump) + VERIFIED_SUFFIX)


def partial_path(dump: Path) -> Path:
    return dump.with_name("." + dump.name + PARTIAL_SUFFIX)


def match_dump_file(path: Path) -> str | None:
    """The stamp if `path` is named exactly `<its directory>-<stamp>.dump` (or `.dir`), else None."""
    suffixes = f"(?:{re.escape(DUMP_SUFFIX)}|{re.escape(DIR_SUFFIX)})"
    pattern = re.escape(path.parent.name) + rf"-({_STAMP_RE}){suffixes}"
    m = re.fullmatch(pattern, path.name)
    return m.group(1) if m else None


def dump_files(db_dir: Path, *, now: datetime | None = None) -> list[tuple[str, Path]]:
    """(stamp, path) of every file in `db_dir` named like one of our dumps, oldest first, except
    those stamped in the future (see the module docstring).

    Name only: a file listed here may lack its manifest (see `list_dumps` for complete dumps).
    """
    limit = format_stamp((now or datetime.now(UTC)) + FUTURE_SKEW)
    return [(stamp, path) for stamp, path in _named_dumps(db_dir) if stamp <= limit]


def future_dump_files(db_dir: Path, *, now: datetime | None = None) -> list[Path]:
    """Files named like dumps but stamped more than FUTURE_SKEW ahead of `now`: listings ignore them."""
    limit = format_stamp((now or datetime.now(UTC)) + FUTURE_SKEW)
    return [path for stamp, path in _named_dumps(db_dir) if stamp > limit]


def _named_dumps(db_dir: Path) -> list[tuple[str, Path]]:
    found = []
    try:
        entries = list(Path(db_dir).iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    for path in entries:
        stamp = match_dump_file(path)
        if stamp is not None and (path.is_dir() if path.name.endswith(DIR_SUFFIX) else path.is_file()):
            found.append((stamp, path))
    return sorted(found)


@dataclass(frozen=True)
class DumpInfo:
    """One complete dump: its file, stamp, size and manifest (the parsed JSON document)."""

    database: str
    path: Path
    stamp: str
    taken_at: datetime
    size_bytes: int
    manifest: dict[str, Any]

    @property
    def finished_at(self) -> float:
        """When the dump finished, as a Unix time (from the manifest, else the stamp)."""
        value = self.manifest.get("finished_at")
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value).timestamp()
            except ValueError:
                pass
        return self.taken_at.timestamp()


def complete_dump(path: Path) -> DumpInfo | None:
    """A DumpInfo if `path` is a complete dump pgtool wrote (name pattern + matching manifest)."""
    import json

    stamp = match_dump_file(path)
    if stamp is None:
        return None
    try:
        manifest = json.loads(manifest_path(path).read_text())
        size = dump_size(path)
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("dump_file") != path.name:
        return None
    database = manifest.get("database")
    if not isinstance(database, str) or encode_name(database) != path.parent.name:
        return None
    return DumpInfo(database, path, stamp, parse_stamp(stamp), size, manifest)


def list_database_dumps(db_dir: Path) -> list[DumpInfo]:
    """Complete dumps in one database directory, oldest first."""
    return [info for _stamp, path in dump_files(db_dir) if (info := complete_dump(path)) is not None]


def is_verified(info: DumpInfo) -> bool:
    """`pgtool verify` restored this very dump (its record names the file and the manifest's sha256)."""
    import json

    try:
        record = json.loads(verified_path(info.path).read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(record, dict)
        and record.get("dump_file") == info.path.name
        and record.get("sha256") == info.manifest.get("sha256")
    )


def list_dumps(backup_dir: str | Path) -> dict[str, list[DumpInfo]]:
    """Every complete dump under `backup_dir` (what `pgtool backup --dest` wrote), by database name.

    Returns {database: [DumpInfo, ...]} with each list sorted oldest first (so `[-1]` is the newest).
    Databases without any complete dump are left out; incomplete files, temporary files and files
    pgtool did not write are ignored. A missing `backup_dir` yields {}. Never raises for bad files.

    Example: newest = list_dumps("/backups/dumps")["shop"][-1]; newest.taken_at, newest.size_bytes,
    newest.manifest["tables"].
    """
    result: dict[str, list[DumpInfo]] = {}
    try:
        subdirs = sorted(p for p in Path(backup_dir).iterdir() if p.is_dir())
    except (FileNotFoundError, NotADirectoryError):
        return {}
    for sub in subdirs:
        infos = list_database_dumps(sub)
        if infos:
            result[infos[-1].database] = infos
    return result
