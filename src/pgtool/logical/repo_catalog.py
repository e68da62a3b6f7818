"""Logical dumps in a backup repository (`--repo`, `pgtool.repo`): names, listing, retention.

One dump is three objects under `dumps/<db-encoded>/<stamp>/` (`pgtool.repo.dump_prefix`):

    dump            pg_dump's custom-format output, streamed in (multipart: invisible until complete)
    manifest.json   the manifest (`pgtool.logical.dump_manifest`), written after the dump object:
                    it is the completion marker
    verified.json   written by `pgtool verify` once the dump passed a drill (retention keeps the
                    newest such dump)

A directory-format dump (`--format directory`, `pgtool.logical.repo_directory`) has, instead of
`dump`, one object per file of pg_dump's directory under `dir/` (`dir/toc.dat`, `dir/<id>.dat.gz`...);
`toc.dat` is uploaded last of them and deleted first, and the dump is complete only with it.

A dump is *complete* when both `dump` and `manifest.json` are listed under its stamp: the manifest is
only written once the dump object is committed, and retention deletes the manifest last, so a dump
that is listed is whole, and a killed run leaves at most a dump object without a manifest, which no
listing, verify or retention ever takes for a backup. Stamps more than `dumps.FUTURE_SKEW` ahead of
the clock are left out, as in a backup directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pgtool.logical import dumps
from pgtool.obs.logging import get_logger
from pgtool.repo import ObjectAbsent, Repository, decode_db, dump_prefix, encode_db
from pgtool.repo.layout import DUMPS

DUMP_OBJECT = "dump"
DIR = "dir"  # a directory-format dump's files: dir/<file>
TOC_FILE = "toc.dat"
MANIFEST_OBJECT = "manifest.json"
VERIFIED_OBJECT = "verified.json"


@dataclass(frozen=True)
class RepoDump:
    """One dump under `dumps/<db>/<stamp>/`: complete when both the dump and its manifest exist."""

    database: str
    stamp: str
    size_bytes: int  # the stored object's size (compressed, maybe encrypted)
    has_manifest: bool
    has_verified: bool
    dir_files: tuple[str, ...] = ()  # a directory-format dump's files (names under dir/)

    @property
    def prefix(self) -> str:
        return dump_prefix(self.database, self.stamp)

    @property
    def is_directory(self) -> bool:
        return bool(self.dir_files)

    @property
    def complete(self) -> bool:
        return self.has_manifest and (not self.is_directory or TOC_FILE in self.dir_files)

    @property
    def dump_object(self) -> str:
        """The dump's object (a directory dump: the name its files are under, for messages)."""
        return self.prefix + (DIR if self.is_directory else DUMP_OBJECT)

    @property
    def content_objects(self) -> list[str]:
        """The objects holding the dump's bytes; a directory dump's `toc.dat` first."""
        if not self.is_directory:
            return [self.dump_object]
        names = sorted(self.dir_files, key=lambda f: (f != TOC_FILE, f))
        return [f"{self.prefix}{DIR}/{f}" for f in names]

    @property
    def manifest_object(self) -> str:
        return self.prefix + MANIFEST_OBJECT

    @property
    def verified_object(self) -> str:
        return self.prefix + VERIFIED_OBJECT

    @property
    def taken_at(self) -> datetime:
        return dumps.parse_stamp(self.stamp)


def _stamped(repo: Repository, database: str) -> dict[str, dict[str, int]]:
    """{stamp: {object file name: size}} under the database's prefix (stamps of our format only)."""
    found: dict[str, dict[str, int]] = {}
    prefix = f"{DUMPS}/{encode_db(database)}/"
    for info in repo.list(prefix):
        parts = info.name[len(prefix) :].split("/")
        if len(parts) == 3 and parts[1] == DIR:
            parts = [parts[0], f"{DIR}/{parts[2]}"]
        if len(parts) != 2:
            continue
        try:
            dumps.parse_stamp(parts[0])
        except ValueError:
            continue
        found.setdefault(parts[0], {})[parts[1]] = info.size
    return found


def list_dumps(repo: Repository, database: str, *, now: datetime | None = None) -> list[RepoDump]:
    """Every dump object of `database` (complete or not), oldest first; future stamps left out."""
    limit = dumps.format_stamp((now or datetime.now(UTC)) + dumps.FUTURE_SKEW)
    out = []
    for stamp, objects in sorted(_stamped(repo, database).items()):
        files = tuple(sorted(n[len(DIR) + 1 :] for n in objects if n.startswith(DIR + "/")))
        if DUMP_OBJECT not in objects and not files:
            continue
        if stamp > limit:
            get_logger().warning(
                "dump stamped in the future ignored",
                object=repo.where(dump_prefix(database, stamp)),
                hint="check the clock",
            )
            continue
        out.append(
            RepoDump(
                database,
                stamp,
                objects.get(DUMP_OBJECT) or sum(objects[f"{DIR}/{f}"] for f in files),
                MANIFEST_OBJECT in objects,
                VERIFIED_OBJECT in objects,
                files,
            )
        )
    return out


def complete_dumps(repo: Repository, database: str) -> list[RepoDump]:
    """The complete dumps of `database`, oldest first (so `[-1]` is the newest)."""
    return [d for d in list_dumps(repo, database) if d.complete]


def databases(repo: Repository) -> list[str]:
    """Every database with at least one dump object in the repository, sorted."""
    names = set()
    for info in repo.list(f"{DUMPS}/"):
        parts = info.name.split("/")
        if (len(parts) == 4 and parts[3] == DUMP_OBJECT) or (len(parts) == 5 and parts[3] == DIR):
            names.add(decode_db(parts[1]))
    return sorted(names)


def read_json(repo: Repository, name: str) -> dict[str, Any] | None:
    """The JSON object stored under `name`, or None if it is absent or not a JSON object.

    Damage (IntegrityError) and store errors propagate: they are never mistaken for "no record".
    """
    try:
        data = json.loads(repo.read_bytes(name))
    except ObjectAbsent:
        return None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def is_verified(repo: Repository, dump: RepoDump) -> bool:
    """`pgtool verify` restored this very dump (its record names the manifest's sha256)."""
    if not dump.has_verified:
        return False
    record = read_json(repo, dump.verified_object)
    manifest = read_json(repo, dump.manifest_object)
    return (
        record is not None
        and manifest is not None
        and record.get("stamp") == dump.stamp
        and record.get("sha256") == manifest.get("sha256")
    )


def expired(
    repo: Repository, database: str, retention_days: int, *, now: datetime | None = None
) -> list[RepoDump]:
    """Complete dumps retention would delete: older than the cutoff, never the newest complete one nor
    the newest verified one (the same rules as `pgtool.logical.dump_retention`)."""
    complete = complete_dumps(repo, database)
    cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
    keep = {d.stamp for d in complete[-1:]}
    for d in reversed(complete):
        if is_verified(repo, d):
            keep.add(d.stamp)
            break
    return [d for d in complete if d.stamp not in keep and d.taken_at < cutoff]


def apply_retention(
    repo: Repository, database: str, retention_days: int, *, now: datetime | None = None
) -> list[str]:
    """Delete expired dumps; return where each deleted dump object was. The dump object goes first and
    the manifest last: a run that dies in between leaves a manifest without a dump, never listed."""
    removed = []
    for d in expired(repo, database, retention_days, now=now):
        for name in (*d.content_objects, d.verified_object, d.manifest_object):
            repo.delete(name)
        removed.append(repo.where(d.dump_object))
        get_logger().info("retention removed dump", object=repo.where(d.dump_object))
    return removed


def leftovers(repo: Repository, database: str) -> list[RepoDump]:
    """Dump objects without a manifest: a killed run's, since the caller holds the backup lock and so
    nobody is writing one. Listed so the run can warn; nothing deletes them on its own."""
    return [d for d in list_dumps(repo, database) if not d.has_manifest]
