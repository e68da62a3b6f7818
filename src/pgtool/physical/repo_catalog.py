"""Base backups in a backup repository (`--repo`): upload, list, download and delete.

Two layouts under `base/<stamp>/`, read alike:
- streamed (`repo_stream`): `base.tar[.lz4|.zst|.gz]`, the one tar pg_basebackup wrote to stdout (the
  WAL the backup needs under `pg_wal/` inside it, and `backup_manifest` as its last member), plus
  `backup_manifest` as an object of its own (an incremental backup needs its parent's);
- spooled (`upload`): the files of a complete local backup directory (see `base_catalog`:
  base.tar[.lz4|.zst|.gz], pg_wal.tar[.gz], backup_manifest, tablespace tars).
Either way the metadata object `base/<stamp>/pgtool-basebackup.json` is written LAST: a backup is
listed only when its metadata object exists, so an upload killed half-way is never taken for a backup.
Deleting goes the other way: the metadata first, so a half-deleted backup is no longer listed either.

A run owns its stamp through `base/<stamp>/pgtool-basebackup.claim` (`claim`), one conditional create
before anything else is written under it: two runs starting in the same second never share a prefix.
The claim is not part of a backup: never listed, never downloaded (`objects`), deleted with the stamp
(last, so a half-deleted stamp stays claimed). A stamp holding only a claim is a run in progress (or
one killed outright before it wrote anything else): `unlisted` leaves it out.

A download of either layout reads like a local backup directory (`base_unpack`, `base_verify`,
`base_combine` handle WAL in `pg_wal.tar` or inside `base.tar`); `recover` of a single backup reads
the objects without a download instead (`pgtool.recovery.repo_base.stream_unpack`).

Every object carries the repository's checksum (and authentication, when encrypted); `download`
verifies each one while writing it (`Repository.read_to_file`) and then compares its size with what
the metadata recorded (`check_size`), so a backup that was read back is the backup that was written.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

from pgtool.errors import OperationError, PgtoolError
from pgtool.physical.base_catalog import METADATA_FILE, BaseBackupInfo, is_stamp
from pgtool.repo import IntegrityError, ObjectAbsent, ObjectDiffers, Repository, base_prefix

CLAIM_FILE = "pgtool-basebackup.claim"


def _files(backup_dir: Path) -> list[Path]:
    return sorted(p for p in backup_dir.rglob("*") if p.is_file())


def upload(repo: Repository, backup_dir: Path, stamp: str) -> int:
    """Copy the complete local backup in `backup_dir` to `base/<stamp>/`; return the bytes read.

    Each file streams in (multipart, chunk by chunk); the metadata goes last. The tars are already
    compressed by pg_basebackup, so they are stored without a second compression.
    """
    prefix = base_prefix(stamp)
    total = 0
    files = _files(backup_dir)
    meta = backup_dir / METADATA_FILE
    if meta not in files:
        raise OperationError(f"{backup_dir} has no {METADATA_FILE}: not a complete base backup")
    for path in [p for p in files if p != meta] + [meta]:
        rel = path.relative_to(backup_dir).as_posix()
        compressed = path.suffix in (".lz4", ".zst", ".gz")
        total += repo.put_file(prefix + rel, path, compress=not compressed)
    return total


def list_base_backups(repo: Repository) -> list[BaseBackupInfo]:
    """Complete base backups in the repository, oldest first, each read and checked from its metadata.

    `info.path` is None (the backup is not on local disk); `info.id` is the stamp. A metadata object
    that fails its checksum is an IntegrityError (never skipped: a damaged newest backup must be loud).
    """
    found = []
    for obj in repo.list("base/"):
        parts = obj.name.split("/")
        if len(parts) != 3 or parts[2] != METADATA_FILE or not is_stamp(parts[1]):
            continue
        try:
            info = BaseBackupInfo.from_json(repo.read_bytes(obj.name).decode("utf-8"))
        except ObjectAbsent:
            continue  # deleted by a concurrent retention run
        except (ValueError, TypeError, KeyError) as exc:
            raise IntegrityError(f"{repo.where(obj.name)} is not base backup metadata: {exc}") from exc
        if info.id != parts[1]:
            raise IntegrityError(f"{repo.where(obj.name)} describes backup {info.id}, not {parts[1]}")
        found.append(info)
    return sorted(found, key=lambda i: i.id)


def claim(repo: Repository, stamp: str) -> bool:
    """Claim `stamp` for this run: True when the run now owns it (nothing else of it is in the
    repository), False when another run holds it or something of it is already stored.

    One conditional create of the claim, whose content is unique to this run (host, pid, a random
    token): `put_if_absent` takes an identical object for success, so only a unique content makes a
    claim that exists already mean "another run's". False from `put_if_absent` is then this run's own
    create whose answer was lost (the store retried it): the claim is ours. After the claim, the stamp
    must hold nothing else: a finished backup (whose run released its claim) or the leftovers of a run
    killed before claims existed; then the claim is taken back and the stamp left alone."""
    name = base_prefix(stamp) + CLAIM_FILE
    owner = {"host": socket.gethostname(), "pid": os.getpid(), "token": secrets.token_hex(16)}
    owner["claimed_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        repo.put_if_absent(name, json.dumps(owner, sort_keys=True).encode(), compress=False)
    except (ObjectDiffers, ObjectAbsent):  # another run's claim (ObjectAbsent: released as it was read)
        return False
    try:
        if not _holds_more_than_claim(repo, stamp):
            return True
    except BaseException:  # a failed listing, SIGTERM: the caller never learns of this claim
        with suppress(PgtoolError):
            repo.delete(name)
        raise
    repo.delete(name)
    return False


def recorded(repo: Repository, stamp: str) -> bool:
    """Whether `stamp` has its record: written last, so the backup under it is whole."""
    return repo.exists(base_prefix(stamp) + METADATA_FILE)


def release(repo: Repository, stamp: str) -> None:
    """Delete this run's claim of `stamp` (its backup's record is written, or nothing of it is left)."""
    repo.delete(base_prefix(stamp) + CLAIM_FILE)


def _holds_more_than_claim(repo: Repository, stamp: str) -> bool:
    """Objects of `stamp` besides its claim, or (local) a killed upload's part (`NAME#N`, never listed)."""
    prefix = base_prefix(stamp)
    if any(o.name != prefix + CLAIM_FILE for o in repo.list(prefix)):
        return True
    if repo.url.kind != "local" or repo.url.path is None:
        return False
    # another run's claim on its way in is not a leftover: the conditional create settles that one
    return any(_staged(repo.url.path, stamp))


def _staged(root: Path, stamp: str = "*") -> Iterator[Path]:
    """A local repository's files of uploads in progress or killed (`NAME#N`, never listed) under
    `base/<stamp>/` (every stamp by default), but a claim's: those hold no backup data."""
    return (p for p in root.glob(f"base/{stamp}/*#*") if p.name.partition("#")[0] != CLAIM_FILE)


def unlisted(repo: Repository) -> list[str]:
    """Stamps that hold objects but no metadata: runs killed outright (SIGKILL), or running now.

    A local repository also counts the files its store keeps for an upload in progress (`NAME#N`,
    never listed): a killed upload leaves its part there; the clouds keep an abandoned multipart upload
    out of sight (S3 until a lifecycle rule aborts it; Azure drops uncommitted blocks after a week).
    A claim alone does not count: it holds no backup data, and every run shows one from its start, so
    overlapping runs would warn about each other (one killed outright leaves it, a small object)."""
    stamps: dict[str, bool] = {}
    for obj in repo.list("base/"):
        parts = obj.name.split("/")
        if len(parts) >= 3 and is_stamp(parts[1]) and parts[2:] != [CLAIM_FILE]:
            record = parts[2] == METADATA_FILE and len(parts) == 3
            stamps[parts[1]] = stamps.get(parts[1], False) or record
    if repo.url.kind == "local" and repo.url.path is not None:
        for staged in _staged(Path(repo.url.path)):
            if is_stamp(staged.parent.name):
                stamps.setdefault(staged.parent.name, False)
    return sorted(s for s, listed in stamps.items() if not listed)


def objects(repo: Repository, info: BaseBackupInfo) -> dict[str, str]:
    """The objects of backup `info` (its path in the backup -> its repository name), sorted; an
    IntegrityError when one that its metadata lists is missing."""
    prefix = base_prefix(info.id)
    # a claim is the run's, not the backup's: one is left only when the run died right after its record
    found = {
        o.name[len(prefix) :]: o.name
        for o in repo.list(prefix)
        if o.name.startswith(prefix) and o.name != prefix + CLAIM_FILE
    }
    missing = sorted(set(info.files) - set(found))
    if missing:
        raise IntegrityError(f"base backup {info.id} in {repo.url.display()} lacks {', '.join(missing)}")
    return dict(sorted(found.items()))


def check_size(repo: Repository, info: BaseBackupInfo, rel: str, name: str, read: int) -> None:
    """IntegrityError when object `name` (`rel` in the backup) read back other than `read` bytes."""
    if rel in info.files and info.files[rel] != read:
        raise IntegrityError(
            f"{repo.where(name)} holds {read} bytes; the backup's metadata says {info.files[rel]}"
        )


def download(repo: Repository, info: BaseBackupInfo, dest_parent: Path) -> Path:
    """Fetch backup `info` into `dest_parent/<stamp>/`, verifying every object; return that directory.

    The directory then reads like a local backup (`base_catalog.read_info` works on it). On any
    failure the partial directory is removed and the error raised.
    """
    target = dest_parent / info.id
    target.mkdir(parents=True)
    try:
        for rel, name in objects(repo, info).items():
            path = target / rel
            if not path.resolve().is_relative_to(target.resolve()):
                raise IntegrityError(f"{repo.where(name)}: a name that leaves the backup directory")
            path.parent.mkdir(parents=True, exist_ok=True)
            check_size(repo, info, rel, name, repo.read_to_file(name, path))
        recorded = json.loads((target / METADATA_FILE).read_text())
        if recorded.get("id") != info.id:
            raise IntegrityError(f"base backup {info.id}: its metadata changed while it was read")
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    info.path = target
    return target


def delete(repo: Repository, stamp: str) -> int:
    """Remove backup `stamp`: its metadata first (it stops being listed), then the rest, its claim
    last (no other run can claim the stamp while something of it is left)."""
    prefix = base_prefix(stamp)
    repo.delete(prefix + METADATA_FILE)
    objects = repo.list(prefix)
    for obj in sorted(objects, key=lambda o: o.name == prefix + CLAIM_FILE):
        repo.delete(obj.name)
    return len(objects) + 1
