"""Unpack a tar-format base backup into a new data directory, whatever its compression.

`base.tar*` goes to PGDATA, `pg_wal.tar*` to PGDATA/pg_wal, and each tablespace `<oid>.tar*` to
`<PGDATA>.tablespaces/<oid>`, with `tablespace_map` rewritten to point there (PostgreSQL creates the
pg_tblspc links from that file when it starts). When pgtool runs as root, everything is handed to the
server user, since PostgreSQL refuses a data directory it does not own.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pgtool.errors import OperationError, UsageError
from pgtool.obs.logging import get_logger
from pgtool.pg.privileges import give_to_server
from pgtool.physical.base_catalog import BaseBackupInfo
from pgtool.physical.tar_stream import extract, tar_stem

# Written when the backup has no postgresql.conf / pg_hba.conf (Debian keeps them in /etc).
MINIMAL_CONF = "# written by pgtool recover: the base backup had no postgresql.conf\n"
MINIMAL_HBA = (
    "# written by pgtool recover: the base backup had no pg_hba.conf (local connections only)\n"
    "local all all peer\n"
    "host all all 127.0.0.1/32 scram-sha-256\n"
)

# Extracts one tar of a backup into the directory given; returns the bytes written.
TarSource = Callable[[Path], int]


@dataclass
class Unpacked:
    pgdata: Path
    bytes_written: int
    tablespaces: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def ensure_empty_dir(pgdata: Path) -> None:
    """Refuse an existing non-empty directory; create a missing one (0700)."""
    if pgdata.exists():
        if not pgdata.is_dir():
            raise UsageError(f"{pgdata} exists and is not a directory")
        if any(pgdata.iterdir()):
            raise UsageError(
                f"{pgdata} is not empty", hint="give a new or empty directory for the recovered copy"
            )
    pgdata.mkdir(parents=True, exist_ok=True)
    pgdata.chmod(0o700)


def unpack_base_backup(backup: BaseBackupInfo, pgdata: Path) -> Unpacked:
    """Extract `backup` (a local backup directory) into the empty directory `pgdata`."""
    assert backup.path is not None
    tars: dict[str, TarSource] = {
        stem: functools.partial(extract, p)
        for p in sorted(backup.path.iterdir())
        if (stem := tar_stem(p.name)) is not None
    }
    return unpack_tars(backup.id, tars, pgdata)


def unpack_tars(backup_id: str, tars: Mapping[str, TarSource], pgdata: Path) -> Unpacked:
    """Extract a backup's tars (`base`, `pg_wal`, tablespace oids -> what extracts each into a given
    directory) into the empty directory `pgdata`, in that order. A tablespace directory this call
    created is removed again if it fails; PGDATA is the caller's to undo (it knows what was there)."""
    log = get_logger().bind(backup=backup_id, pgdata=str(pgdata))
    ensure_empty_dir(pgdata)
    if "base" not in tars:
        raise OperationError(f"base backup {backup_id} has no base.tar")
    result = Unpacked(pgdata=pgdata, bytes_written=tars["base"](pgdata))
    if "pg_wal" in tars:
        wal_dir = pgdata / "pg_wal"
        wal_dir.mkdir(mode=0o700, exist_ok=True)
        result.bytes_written += tars["pg_wal"](wal_dir)
    created: list[Path] = []
    try:
        for oid in sorted(k for k in tars if k not in ("base", "pg_wal")):
            target = pgdata.with_name(pgdata.name + ".tablespaces") / oid
            if target.exists() and any(target.iterdir()):
                raise UsageError(f"tablespace directory {target} is not empty")
            if not target.exists():
                created.append(target)
            target.mkdir(parents=True, mode=0o700, exist_ok=True)
            result.bytes_written += tars[oid](target)
            result.tablespaces[oid] = target
            give_to_server(target.parent, recursive=True)
    except BaseException:
        for target in created:
            shutil.rmtree(target, ignore_errors=True)
        raise
    if result.tablespaces:
        _rewrite_tablespace_map(pgdata, result.tablespaces)
    finish(pgdata, result)
    log.info("base backup unpacked", bytes=result.bytes_written, tablespaces=len(result.tablespaces))
    return result


def finish(pgdata: Path, result: Unpacked) -> None:
    """What every restored data directory gets: the config files the server needs, archive_status,
    mode 0700, and (as root) the server user as owner."""
    for name, text in (("postgresql.conf", MINIMAL_CONF), ("pg_hba.conf", MINIMAL_HBA)):
        if not (pgdata / name).exists():
            (pgdata / name).write_text(text)
            result.notes.append(f"the backup had no {name}; wrote a minimal one - review it before use")
    (pgdata / "pg_wal" / "archive_status").mkdir(parents=True, exist_ok=True)
    pgdata.chmod(0o700)
    give_to_server(pgdata, recursive=True)


def _rewrite_tablespace_map(pgdata: Path, locations: dict[str, Path]) -> None:
    path = pgdata / "tablespace_map"
    lines = []
    for line in path.read_text().splitlines() if path.exists() else []:
        oid = line.split(" ", 1)[0]
        if oid in locations:
            line = f"{oid} {locations[oid]}"
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")
    os.chmod(path, 0o600)
