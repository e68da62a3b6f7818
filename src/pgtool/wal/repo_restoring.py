"""restore-wal from a backup repository (`--repo`): the object's own checksum or authentication, then
the page header against the name and the repository's system identifier; DEST appears only after all of
it. Absent -> 1; an unreachable store, a timeout, a damaged object, a missing or wrong key -> 126. With
`--prefetch`, the following segments are fetched ahead into a verified spool (`pgtool.wal.repo_prefetch`).

The archive side and the repository's WAL listing are `pgtool.wal.repo_archive`'s.
"""

from __future__ import annotations

import os

from pgtool import durable_write as durable
from pgtool.repo.errors import ObjectAbsent, RepoError
from pgtool.wal.archive import CorruptArchiveError
from pgtool.wal.checksum import verified_chunks
from pgtool.wal.errors import RESTORE_ERROR, RESTORE_NOT_FOUND, WalCommandError
from pgtool.wal.names import SEGMENT, WalName
from pgtool.wal.repo_archive import RepoWal, _names, open_wal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

    from pgtool.wal import repo_prefetch
    from pgtool.wal.restoring import RestoreResult


def restore_wal_repo(
    wal_name: str, dest_path: str, url: str, *, key_file: str | None = None, prefetch: int = 0
) -> RestoreResult:
    """Restore `wal_name` from the repository at `url` to dest_path, verified before it appears.

    prefetch: keep up to this many following segments of the timeline fetched ahead, verified, in a
    spool beside dest_path (`pgtool.wal.repo_prefetch`); a segment found there is moved into place.
    WalCommandError with exit 1 only when the repository exists and holds no such object; 126 for
    everything else.
    """
    from pgtool.wal.restoring import RestoreResult, unlink_quietly, write_all

    wal, obj = _names(wal_name, RESTORE_ERROR)
    spool = None
    if prefetch > 0 and wal.kind == SEGMENT:
        from pgtool.wal import repo_prefetch

        spool = repo_prefetch.Spool(dest_path)
    if spool is not None:
        try:
            taken = spool.take(wal_name, dest_path)
        except OSError:
            taken = None
        if taken is not None:
            result = RestoreResult(f"{spool.dir}/{wal_name}", dest_path, taken)
            result.prefetched = _refill(spool, wal, dest_path, url, key_file, prefetch)
            return result
    dest_dir = os.path.dirname(os.path.abspath(dest_path))
    tmp = None
    try:
        archive = open_wal(url, key_file, create=False)
        where = archive.where(obj)
        system_id = archive.system_id() if wal.has_page_header else None
        content = archive.repo.open(obj)
        first = next(content, None)  # ObjectAbsent surfaces here, before any file is made
        tmp, fd = durable.create_temp(dest_dir, os.path.basename(dest_path))
        written = 0
        try:
            chunks = _chain(first, content)
            for chunk in verified_chunks(chunks, wal, None, system_id, where):
                written += write_all(fd, chunk)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dest_path)
        tmp = None
        durable.fsync_path(dest_dir, directory=True)
    except ObjectAbsent as exc:
        raise WalCommandError(f"{wal_name} is not in repository {url}", RESTORE_NOT_FOUND) from exc
    except (RepoError, CorruptArchiveError) as exc:
        hint = getattr(exc, "hint", None) or "recovery stops here rather than skipping WAL"
        raise WalCommandError(f"restoring {wal_name} failed: {exc}", RESTORE_ERROR, hint=hint) from exc
    except OSError as exc:
        raise WalCommandError(
            f"restoring {wal_name} to {dest_path} failed: {exc.strerror or exc}", RESTORE_ERROR
        ) from exc
    finally:
        if tmp is not None:
            unlink_quietly(tmp)
    result = RestoreResult(where, dest_path, written)
    if spool is not None:
        result.prefetched = _refill(spool, wal, dest_path, url, key_file, prefetch, archive, system_id)
    return result


def _refill(
    spool: repo_prefetch.Spool,
    wal: WalName,
    dest_path: str,
    url: str,
    key_file: str | None,
    depth: int,
    archive: RepoWal | None = None,
    system_id: int | None = None,
) -> int:
    """Top the spool up after `wal` was restored; best effort: a failure here never fails the restore
    that already succeeded (each segment's own call fetches and checks it again)."""
    from pgtool.wal import repo_prefetch

    seg_size = repo_prefetch.segment_size_of(dest_path)
    spool.keep_only_after(wal, seg_size)
    if seg_size is None:
        return 0
    missing = repo_prefetch.to_fetch(spool, wal, seg_size, depth)
    if not missing:
        return 0  # served from the spool and still half full: no request at all
    try:
        if archive is None:
            archive = open_wal(url, key_file, create=False)
            system_id = archive.system_id()
        return repo_prefetch.refill(archive, spool, missing, system_id)
    except (RepoError, CorruptArchiveError, OSError):
        return 0


def _chain(first: bytes | None, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first is not None:
        yield first
    yield from rest
