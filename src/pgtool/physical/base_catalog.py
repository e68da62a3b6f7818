"""The catalogue of base backups in a backup directory: names, JSON metadata, completeness.

Layout of `DIR` (the `--dest` of `pgtool basebackup`):

    DIR/20261124T163000Z/              one complete base backup (UTC start time)
        base.tar[.lz4|.zst|.gz]        pg_basebackup's tar output
        pg_wal.tar[.gz]                the WAL needed to make it consistent
        backup_manifest
        pgtool-basebackup.json         the metadata below (`BaseBackupInfo`)
    DIR/.incomplete-20261124T170000Z-1234/   a backup being written (or left by a crash): ignored

A backup is complete when its directory has a timestamp name, its metadata file and its manifest:
the directory is renamed to that name only after pg_basebackup succeeded and the result was checked.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

METADATA_FILE = "pgtool-basebackup.json"
MANIFEST_FILE = "backup_manifest"
INCOMPLETE_PREFIX = ".incomplete-"
LOCK_FILE = ".pgtool-basebackup.lock"
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
FORMAT_VERSION = 1

_STAMP = re.compile(r"^\d{8}T\d{6}Z$")


@dataclass
class BaseBackupInfo:
    """What `pgtool basebackup` records about one base backup (the JSON file, one key per field).

    LSNs are text (`0/3000028`) as PostgreSQL prints them; times are ISO 8601 with an offset.
    stop_time is read from the server right after pg_basebackup returned, so it is never earlier than
    the moment the backup became consistent: choosing backups by it is safe for PITR.
    next_xid is the server's next transaction id at that moment (for --target-xid); both, and
    superuser, are None when the backup role could not open an ordinary connection.
    parent is set on an incremental backup (`basebackup --incremental`): the id of the backup it was
    taken against; chain lists the ids it needs to be restored, the full backup first and the parent
    last (empty for a full backup). Both are absent from records written before incrementals existed,
    which read as full backups.
    """

    id: str
    start_time: str
    stop_time: str
    start_lsn: str
    stop_lsn: str
    start_wal_file: str
    stop_wal_file: str
    timeline: int
    system_identifier: str
    server_version: str
    server_version_num: int
    wal_segment_size: int
    compression: str
    wal_method: str
    size_bytes: int
    files: dict[str, int] = field(default_factory=dict)
    next_xid: int | None = None
    superuser: str | None = None  # the bootstrap superuser's name (the drill connects as it)
    verified_with: str = ""
    duration_seconds: float = 0.0
    tablespaces: list[str] = field(default_factory=list)
    pgtool_version: str = ""
    parent: str | None = None
    chain: list[str] = field(default_factory=list)
    format_version: int = FORMAT_VERSION
    path: Path | None = None  # where it was found (not stored)

    @property
    def major(self) -> int:
        return self.server_version_num // 10000

    @property
    def incremental(self) -> bool:
        return self.parent is not None

    @property
    def kind(self) -> str:
        return "incremental" if self.incremental else "full"

    @property
    def stop_datetime(self) -> datetime:
        return datetime.fromisoformat(self.stop_time)

    @property
    def start_datetime(self) -> datetime:
        return datetime.fromisoformat(self.start_time)

    def to_json(self) -> str:
        data = asdict(self)
        data.pop("path")
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, path: Path | None = None) -> BaseBackupInfo:
        data: dict[str, Any] = json.loads(text)
        known = {f for f in cls.__dataclass_fields__ if f != "path"}
        info = cls(**{k: v for k, v in data.items() if k in known})
        info.path = path
        return info


def is_stamp(name: str) -> bool:
    return bool(_STAMP.match(name))


def read_info(backup_dir: Path) -> BaseBackupInfo | None:
    """The metadata of the complete backup in `backup_dir`, or None if it is not one."""
    if not is_stamp(backup_dir.name) or not backup_dir.is_dir():
        return None
    meta = backup_dir / METADATA_FILE
    if not meta.is_file() or not (backup_dir / MANIFEST_FILE).is_file():
        return None
    try:
        return BaseBackupInfo.from_json(meta.read_text(), path=backup_dir)
    except (ValueError, TypeError, KeyError):
        return None


def list_base_backups(base_dir: Path) -> list[BaseBackupInfo]:
    """Complete base backups in `base_dir`, oldest first (newest last), each with its metadata.

    Incomplete ones (temporary names, missing metadata or manifest, unreadable JSON) are ignored.
    A missing `base_dir` yields an empty list.
    """
    base_dir = Path(base_dir)
    if not base_dir.is_dir():
        return []
    found = [info for entry in base_dir.iterdir() if (info := read_info(entry)) is not None]
    return sorted(found, key=lambda i: i.id)


def incomplete_entries(base_dir: Path) -> list[Path]:
    """Leftovers of interrupted runs (temporary directories) - reported, never deleted automatically."""
    if not base_dir.is_dir():
        return []
    return sorted(p for p in base_dir.iterdir() if p.name.startswith(INCOMPLETE_PREFIX))
