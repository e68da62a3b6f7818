"""Check a freshly written tar-format base backup before it is renamed into place.

Always: `backup_manifest` exists, parses, and its own SHA-256 checksum matches; `pg_wal.tar` holds
every WAL segment from the backup's start to its end (without them it cannot become consistent).
Then the strongest check the client tools allow:
- PostgreSQL 18+ tools: `pg_verifybackup --no-parse-wal` (it reads tar, compressed or not, and checks
  every file's checksum against the manifest; WAL was checked by name above);
- older tools (their pg_verifybackup reads plain format only): every file the manifest lists is in
  the tar archives with the recorded size, and the archives read to the end without error.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgtool.errors import OperationError
from pgtool.pg.binaries import PgBinaries
from pgtool.physical.tar_stream import member_sizes, tar_stem
from pgtool.wal.listing import parse_lsn, segment_name, segno_of_lsn

MANIFEST = "backup_manifest"


@dataclass
class CheckResult:
    start_lsn: str
    stop_lsn: str
    timeline: int
    system_identifier: str | None
    method: str
    tablespaces: list[str] = field(default_factory=list)


def read_manifest(backup_dir: Path) -> dict[str, Any]:
    """The parsed manifest, its own checksum verified. OperationError if missing or damaged."""
    path = backup_dir / MANIFEST
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise OperationError(f"{backup_dir.name}: no backup_manifest: the backup is incomplete") from None
    return parse_manifest(raw, str(path))


def parse_manifest(raw: bytes, where: str) -> dict[str, Any]:
    """The manifest `raw` (read from `where`), its own SHA-256 checksum verified; OperationError if not."""
    try:
        manifest: dict[str, Any] = json.loads(raw)
    except ValueError as exc:
        raise OperationError(f"{where}: the backup manifest is not valid JSON: {exc}") from None
    # The checksum covers every byte up to the line that holds it (PostgreSQL's own definition).
    cut = raw.rfind(b'"Manifest-Checksum"')
    expected = manifest.get("Manifest-Checksum")
    if cut < 0 or not expected or hashlib.sha256(raw[:cut]).hexdigest() != expected:
        raise OperationError(f"{where}: manifest checksum mismatch: the manifest is damaged")
    if not manifest.get("WAL-Ranges"):
        raise OperationError(f"{where}: the backup manifest lists no WAL ranges")
    return manifest


def _tar_files(backup_dir: Path) -> dict[str, Path]:
    """`base`, `pg_wal`, tablespace oids -> their tar file."""
    tars: dict[str, Path] = {}
    for entry in sorted(backup_dir.iterdir()):
        stem = tar_stem(entry.name)
        if stem is not None:
            tars[stem] = entry
    if "base" not in tars:
        raise OperationError(f"{backup_dir.name}: no base.tar in the backup")
    return tars


def check_backup(
    backup_dir: Path, tools: PgBinaries, *, wal_segment_size: int = 16 * 1024 * 1024
) -> CheckResult:
    """Verify the backup in `backup_dir`; raise OperationError naming what is wrong."""
    manifest = read_manifest(backup_dir)
    ranges = manifest["WAL-Ranges"]
    start_lsn, stop_lsn = ranges[0]["Start-LSN"], ranges[-1]["End-LSN"]
    timeline = int(ranges[0]["Timeline"])
    tars = _tar_files(backup_dir)
    tablespaces = sorted(k for k in tars if k not in ("base", "pg_wal"))
    _check_wal(backup_dir, tars, ranges, wal_segment_size)
    if tools.major >= 18 and tools.has("pg_verifybackup"):
        from pgtool.pg import command

        command.run(
            [tools.path("pg_verifybackup"), "--no-parse-wal", "--quiet", str(backup_dir)],
            what="pg_verifybackup",
        )
        method = f"pg_verifybackup {tools.version}"
    else:
        _check_members(backup_dir, tars, manifest)
        method = "manifest checksum and tar member sizes"
    sysid = manifest.get("System-Identifier")
    return CheckResult(
        start_lsn=start_lsn,
        stop_lsn=stop_lsn,
        timeline=timeline,
        system_identifier=str(sysid) if sysid is not None else None,
        method=method,
        tablespaces=tablespaces,
    )


def _check_wal(backup_dir: Path, tars: dict[str, Path], ranges: list[dict[str, Any]], seg_size: int) -> None:
    if "pg_wal" in tars:
        present = set(member_sizes(tars["pg_wal"]))
    else:  # WAL fetched into base.tar
        present = {n.removeprefix("pg_wal/") for n in member_sizes(tars["base"]) if n.startswith("pg_wal/")}
    for name in needed_wal(ranges, seg_size):
        if name not in present:
            raise OperationError(f"{backup_dir.name}: WAL segment {name} needed for consistency is missing")


def needed_wal(ranges: list[dict[str, Any]], seg_size: int) -> list[str]:
    """The segments a backup's manifest `WAL-Ranges` need, in order. The last is the one holding the
    byte before End-LSN, as pg_basebackup counts (XLByteToPrevSeg): a backup ending exactly on a segment
    boundary does not need the segment that starts there."""
    names = []
    for r in ranges:
        tli = int(r["Timeline"])
        start, end = parse_lsn(r["Start-LSN"]), parse_lsn(r["End-LSN"])
        first = segno_of_lsn(start, seg_size)
        last = segno_of_lsn(max(start, end - 1), seg_size)
        names += [segment_name(tli, segno, seg_size) for segno in range(first, last + 1)]
    return names


def _check_members(backup_dir: Path, tars: dict[str, Path], manifest: dict[str, Any]) -> None:
    sizes: dict[str, int] = {}
    for stem, path in tars.items():
        if stem == "pg_wal":
            continue
        prefix = "" if stem == "base" else f"pg_tblspc/{stem}/"
        sizes.update({prefix + name: size for name, size in member_sizes(path).items()})
    for entry in manifest.get("Files", []):
        name = entry.get("Path") or entry.get("Encoded-Path", "")
        if name not in sizes:
            raise OperationError(f"{backup_dir.name}: {name} is in the manifest but not in the tar archives")
        if sizes[name] != int(entry["Size"]):
            raise OperationError(
                f"{backup_dir.name}: {name} has {sizes[name]} bytes, the manifest says {entry['Size']}"
            )
