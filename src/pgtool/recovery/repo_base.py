"""A base backup from a repository, for `recover --repo` and the base drill.

A single (full) backup is recovered by streaming (`stream_unpack`): each tar object is read through
the repository's verifying reader straight into the same safe extraction as a local backup's
(`base_unpack.unpack_tars`, `tar_stream.extract`), decompressed on the way; no local copy of the
tars is made. The reader proves an object whole only at its end, so what was unpacked counts only
once every object read back whole, verified and of the size its metadata records; on any failure
the caller (`recover`) empties PGDATA again. The space needed is the unpacked size (from the backup
manifest), checked before the first byte is written.

The base drill (`verify --base`) and an incremental chain still download (`scratch_chain`):
pg_verifybackup and pg_combinebackup read backup directories on disk. Every member is downloaded,
verified (`pgtool.physical.repo_catalog.download`), into one scratch directory, which then reads like
a local base-backup directory holding that chain; its size is known from the metadata and checked
against the free space first, and the directory is removed whatever happens.

Both repository layouts read the same way (`repo_catalog`): a streamed backup as `base.tar*` (its
WAL inside, under pg_wal/) with `backup_manifest`, a spooled one as its files (`pg_wal.tar*` and
tablespace tars beside `base.tar*`); the unpacking, verifying and combining code reads WAL from either.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pgtool.errors import OperationError
from pgtool.free_space import require_free
from pgtool.obs.logging import get_logger
from pgtool.physical import base_unpack, repo_catalog
from pgtool.physical.base_catalog import MANIFEST_FILE, METADATA_FILE, BaseBackupInfo
from pgtool.physical.tar_stream import extract, tar_stem
from pgtool.repo import IntegrityError, RepoError, Repository

# Room left beside the download or the unpacked copy: metadata, filesystem overhead, other writers.
SPARE_BYTES = 64 * 1024 * 1024
# Unpacked files are counted in whole filesystem blocks (most of a cluster's files are small).
_BLOCK = 4096


def download_size(info: BaseBackupInfo) -> int:
    """The bytes a download of `info` writes (the files its metadata lists; else its recorded size)."""
    return sum(info.files.values()) or info.size_bytes


def existing_parent(path: Path) -> Path:
    """`path` or its nearest existing ancestor (where a scratch directory can be made)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


@contextmanager
def scratch_copy(repo: Repository, info: BaseBackupInfo, parent: Path | None = None) -> Iterator[Path]:
    """Download backup `info` verified into a new directory under `parent` (default: the temp dir).

    Yields the directory that holds `<stamp>/` (a base-backup directory with that one backup); sets
    `info.path`. OperationError when the filesystem has no room for it; removed on exit.
    """
    with scratch_chain(repo, [info], parent) as scratch:
        yield scratch


@contextmanager
def scratch_chain(
    repo: Repository, chain: list[BaseBackupInfo], parent: Path | None = None
) -> Iterator[Path]:
    """Download every backup of `chain` verified into one new directory under `parent` (default: the
    temp dir), each as `<stamp>/`; sets their `path`. OperationError when the filesystem has no room
    for all of them (checked before the first byte is written); removed on exit."""
    where = existing_parent(parent) if parent is not None else Path(tempfile.gettempdir())
    need = sum(download_size(m) for m in chain) + SPARE_BYTES
    require_free(
        where,
        need,
        f"to download base backup {', '.join(m.id for m in chain)} from {repo.url.display()}",
        hint="free space there, or point the scratch directory at a larger filesystem",
    )
    scratch = Path(tempfile.mkdtemp(prefix=".pgtool-base-download-", dir=where))
    try:
        for member in chain:
            get_logger().info("downloading base backup", backup=member.id, bytes=download_size(member))
            repo_catalog.download(repo, member, scratch)
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        for member in chain:
            member.path = None


class VerifiedObject(io.RawIOBase):
    """Repository object `name` as a readable stream of its content, through the verifying reader
    (`Repository.open`). Its bytes are trusted only once `finish` returned: the checksum or the
    authentication of the whole object is proved at its end."""

    def __init__(self, repo: Repository, name: str) -> None:
        super().__init__()
        self.where = repo.where(name)
        self.size = 0  # content bytes read from the store so far
        self._chunks = repo.open(name)
        self._left = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._left:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self.size += len(chunk)
            self._left = memoryview(chunk)
        n = min(len(buffer), len(self._left))
        buffer[:n] = self._left[:n]
        self._left = self._left[n:]
        return n

    def finish(self) -> int:
        """Read to the end of the object (the reader's proof); IntegrityError if it is damaged.
        Returns the object's content size."""
        for chunk in self._chunks:
            self.size += len(chunk)
        self._left = memoryview(b"")
        return self.size

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()  # an abandoned read lets go of its connection now
        super().close()


def unpacked_size(info: BaseBackupInfo, manifest: bytes | None) -> int:
    """The bytes unpacking `info` writes: the files its manifest lists plus the WAL from its start to
    its stop segment (the manifest lists no WAL). Without a manifest, the stored size (a lower bound)."""
    if manifest is None:
        return download_size(info)
    from pgtool.physical.base_verify import parse_manifest

    files = parse_manifest(manifest, f"base backup {info.id}").get("Files") or []
    data = sum(-(-int(f.get("Size", 0)) // _BLOCK) * _BLOCK for f in files)
    per_log = 0x100000000 // info.wal_segment_size

    def segno(name: str) -> int:
        return int(name[8:16], 16) * per_log + int(name[16:24], 16)

    try:
        segments = max(segno(info.stop_wal_file) - segno(info.start_wal_file) + 1, 1)
    except ValueError:  # not WAL file names: count one segment, the 64 MiB spare covers a few more
        segments = 1
    return data + segments * info.wal_segment_size


def stream_unpack(repo: Repository, info: BaseBackupInfo, pgdata: Path) -> base_unpack.Unpacked:
    """Unpack the single (full) backup `info` from `repo` into the empty directory `pgdata`, every tar
    object streamed from the store through its verifying reader (see the module docstring).

    The other objects (manifest, metadata) are read and verified first, and the free space is checked,
    before anything is written. On failure what was written stays for the caller to remove (recover's
    undo knows whether PGDATA existed); the error names the object."""
    names = repo_catalog.objects(repo, info)
    tars = {stem: rel for rel in names if "/" not in rel and (stem := tar_stem(rel)) is not None}
    manifest = None
    for rel, name in names.items():
        if rel in tars.values():
            continue
        if rel not in (MANIFEST_FILE, METADATA_FILE):  # not used here, only verified like the rest
            obj = VerifiedObject(repo, name)
            with contextlib.closing(obj):
                repo_catalog.check_size(repo, info, rel, name, obj.finish())
            continue
        content = repo.read_bytes(name)  # verified whole before it is used
        repo_catalog.check_size(repo, info, rel, name, len(content))
        if rel == MANIFEST_FILE:
            manifest = content
        elif rel == METADATA_FILE and json.loads(content).get("id") != info.id:
            raise IntegrityError(f"base backup {info.id}: its metadata changed while it was read")
    where = existing_parent(pgdata)
    size = unpacked_size(info, manifest)
    require_free(
        where,
        size + SPARE_BYTES,
        f"to restore base backup {info.id} from {repo.url.display()} (unpacked)",
        hint="free space there, or recover into a larger filesystem",
    )
    get_logger().info("streaming base backup", backup=info.id, bytes=size)
    sources: dict[str, base_unpack.TarSource] = {
        stem: functools.partial(_extract_object, repo, info, rel, names[rel]) for stem, rel in tars.items()
    }
    return base_unpack.unpack_tars(info.id, sources, pgdata)


def _extract_object(repo: Repository, info: BaseBackupInfo, rel: str, name: str, dest: Path) -> int:
    """Extract tar object `name` (`rel` in the backup) into `dest`, read to its end and verified."""
    obj = VerifiedObject(repo, name)
    try:
        # Path(name): the object's name gives the tar's compression and names it in errors.
        written = extract(Path(name), dest, raw=io.BufferedReader(obj, buffer_size=1 << 20))
        obj.finish()
    except RepoError:
        raise  # the store's error or the damage found, naming the object
    except Exception as exc:
        if isinstance(exc, OSError) and exc.errno is not None:  # writing here failed (a full disk)
            raise OperationError(
                f"cannot unpack {obj.where} into {dest}: {exc.strerror or exc}",
                hint="free space there, or recover into a larger filesystem",
            ) from None
        # A damaged object mostly breaks the decompressor or the tar reader before its end: reading on
        # to the end lets the checksum say so (IntegrityError); if it holds, the tar itself is bad.
        obj.finish()
        reason = exc.message if isinstance(exc, OperationError) else str(exc)
        raise OperationError(f"{obj.where} does not unpack: {reason}") from None
    finally:
        obj.close()
    repo_catalog.check_size(repo, info, rel, name, obj.size)
    return written
