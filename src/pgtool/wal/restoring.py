"""restore-wal: copy one WAL file from the archive to where PostgreSQL asks for it (stdlib only).

Exit-code contract (pgtool.wal.errors): not archived -> 1, so PostgreSQL's probes for files that do
not exist (.history of future timelines, the segment after the last one) end recovery normally; any
real error -> 126, so recovery stops instead of ending early. The destination is written durably:
a temporary beside it, fsync, rename, fsync of its directory, and only once every check passed
(pgtool.wal.checksum): the SHA-256 recorded at archiving, a segment's page header against its name
(page address, timeline) and the archive's system identifier, exactly its segment size, compressed
files decompressing completely. A file without a checksum record (archived by pgtool before 0.x
recorded them) is refused unless allow_unverified (`--allow-unverified`), which is logged as a warning.
"""

from __future__ import annotations

import os

from pgtool import durable_write as durable
from pgtool.wal.archive import CorruptArchiveError, find_archived
from pgtool.wal.checksum import ChecksumMissingError, expected_checksum, verified_content
from pgtool.wal.codecs import CodecUnavailableError
from pgtool.wal.errors import RESTORE_ERROR, RESTORE_NOT_FOUND, WalCommandError
from pgtool.wal.names import parse_wal_name

RESTORED = "restored"


class RestoreResult:
    """What restore_wal did: the archived source, the destination and the bytes written."""

    __slots__ = ("bytes_out", "dest", "prefetched", "source", "verified")

    def __init__(self, source: str, dest: str, bytes_out: int, verified: bool = True) -> None:
        self.source = source
        self.dest = dest
        self.bytes_out = bytes_out
        self.verified = verified  # False: no checksum record, restored because the caller allowed it
        self.prefetched = 0  # segments fetched ahead into the spool by this call (repository only)


def _error(message: str, hint: str | None = None) -> WalCommandError:
    return WalCommandError(message, RESTORE_ERROR, hint=hint)


def restore_wal(
    wal_name: str, dest_path: str, archive_dir: str, *, allow_unverified: bool = False
) -> RestoreResult:
    """Restore WAL file wal_name from archive_dir to dest_path.

    Raises WalCommandError with exit code 1 when the file is not archived, 126 for anything else
    (bad name, missing or unreadable archive directory, corrupt or truncated file, write failure).
    """
    try:
        parse_wal_name(wal_name)
    except ValueError as exc:
        raise _error(str(exc)) from exc
    if not os.path.isdir(archive_dir):
        raise _error(
            f"archive directory {archive_dir} does not exist or is not a directory",
            hint="recovery stops here rather than ending early; mount or fix the archive and restart",
        )
    try:
        archived = find_archived(archive_dir, wal_name)
    except OSError as exc:
        raise _error(f"cannot look up {wal_name} in {archive_dir}: {exc.strerror}") from exc
    if archived is None:
        raise WalCommandError(f"{wal_name} is not in archive {archive_dir}", RESTORE_NOT_FOUND)
    dest_dir = os.path.dirname(os.path.abspath(dest_path))
    try:
        tmp, fd = durable.create_temp(dest_dir, os.path.basename(dest_path))
    except OSError as exc:
        raise _error(f"cannot create a file in {dest_dir}: {exc.strerror}") from exc
    written = 0
    verified = True
    try:
        try:
            if allow_unverified:
                verified = expected_checksum(archive_dir, wal_name) is not None
            for chunk in verified_content(archive_dir, archived, allow_unverified=allow_unverified):
                written += write_all(fd, chunk)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dest_path)
        durable.fsync_path(dest_dir, directory=True)
    except ChecksumMissingError as exc:
        unlink_quietly(tmp)
        raise _error(
            f"{exc}: it cannot be verified",
            hint="archived before pgtool recorded checksums, or the record was removed; to replay it "
            "anyway pass --allow-unverified to restore-wal (pgtool recover --allow-unverified-wal)",
        ) from exc
    except CorruptArchiveError as exc:
        unlink_quietly(tmp)
        raise _error(
            f"archived file is damaged: {exc}",
            hint="recovery stops rather than skipping WAL; restore the file from another copy",
        ) from exc
    except CodecUnavailableError as exc:
        unlink_quietly(tmp)
        raise _error(f"cannot read {archived.path}: {exc}") from exc
    except OSError as exc:
        unlink_quietly(tmp)
        raise _error(f"restoring {archived.path} to {dest_path} failed: {exc.strerror or exc}") from exc
    try:  # noqa: SIM105 - no contextlib import on the per-segment path
        # Temporaries of restore runs killed earlier (recovery stopped mid-copy) would stay in pg_wal.
        durable.remove_stale_temporaries(dest_dir)
    except OSError:
        pass  # best effort: the restore itself succeeded
    return RestoreResult(archived.path, dest_path, written, verified)


def write_all(fd: int, chunk: bytes) -> int:
    view = memoryview(chunk)
    while view:
        view = view[os.write(fd, view) :]
    return len(chunk)


def unlink_quietly(path: str) -> None:
    try:  # noqa: SIM105 - contextlib would add an import to the per-segment start-up path
        os.unlink(path)
    except OSError:
        pass
