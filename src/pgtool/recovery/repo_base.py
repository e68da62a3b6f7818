"""A base backup from a repository as a local scratch copy, for `recover --repo` and the base drill.

The tars are unpacked by the same code as a local backup's (`pgtool.physical.base_unpack`), which
reads files. So the chosen backup is first downloaded, every object verified
(`pgtool.physical.repo_catalog.download`), into a scratch directory that holds exactly that backup:
its size is known from the metadata and checked against the free space first, and the directory is
removed whatever happens. An incremental backup needs its whole chain (`base_chain.chain_of`):
`scratch_chain` downloads every member into one scratch directory, which then reads like a local
base-backup directory holding that chain.

Both repository layouts download the same way (`repo_catalog`): a streamed backup as `base.tar*` (its
WAL inside, under pg_wal/) with `backup_manifest`, a spooled one as its files (`pg_wal.tar*` beside
`base.tar*`); the unpacking, verifying and combining code reads WAL from either.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pgtool.errors import OperationError
from pgtool.obs.logging import get_logger
from pgtool.physical.base_catalog import BaseBackupInfo
from pgtool.repo import Repository

# Room left beside the download: metadata, filesystem overhead, other writers.
SPARE_BYTES = 64 * 1024 * 1024


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
    free = shutil.disk_usage(where).free
    if free < need:
        names = ", ".join(m.id for m in chain)
        raise OperationError(
            f"no room to download base backup {names} from {repo.url.display()}: it needs "
            f"{need // 2**20} MiB in {where}, {free // 2**20} MiB are free",
            hint="free space there, or point the scratch directory at a larger filesystem",
        )
    scratch = Path(tempfile.mkdtemp(prefix=".pgtool-base-download-", dir=where))
    try:
        from pgtool.physical import repo_catalog

        for member in chain:
            get_logger().info("downloading base backup", backup=member.id, bytes=download_size(member))
            repo_catalog.download(repo, member, scratch)
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        for member in chain:
            member.path = None
