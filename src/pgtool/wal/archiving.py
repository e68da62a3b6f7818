"""archive-wal: copy one WAL file into the archive durably, never overwriting (stdlib only).

Semantics follow contrib/basic_archive, plus a system identifier check and optional compression:
  1. the file must look like what its name says (a segment starts with a long page header whose page
     address matches the name and whose segment size is the file's size);
  2. its system identifier must match the archive's (recorded in SYSTEM_ID_FILE; O(1) per call);
  3. a segment of timeline T past the point where a newer timeline in the archive forked from T is
     refused (split brain: an old primary still writing after a failover; see `_check_fork`);
  4. if the name is already archived (in any compression) with identical content: make sure its
     checksum record is there, fsync, success; with different content: failure, the archive untouched;
  5. otherwise write a unique temporary in the archive directory while hashing the content, fsync it,
     record the checksum durably (pgtool.wal.checksum), link the file to its final name (never
     replacing anything), fsync the directory.
Temporaries left by killed runs are removed on the next run (pgtool.durable_write).
"""

from __future__ import annotations

import os

from pgtool import durable_write as durable
from pgtool.wal import checksum
from pgtool.wal.archive import (
    SYSTEM_ID_FILE,
    ArchivedFile,
    CorruptArchiveError,
    find_archived,
    iter_content,
    list_archive,
    read_system_id,
)
from pgtool.wal.codecs import CODECS, SUFFIXES, CodecUnavailableError
from pgtool.wal.errors import ARCHIVE_FAILED, ARCHIVE_USAGE, WalCommandError
from pgtool.wal.header import LONG_HEADER_SIZE, WalHeaderError, parse_long_header
from pgtool.wal.names import WalName, format_lsn, parse_wal_name
from pgtool.wal.results import ALREADY_ARCHIVED, ARCHIVED, ArchiveResult

# Not typing.TYPE_CHECKING: archive-wal imports this per segment and typing costs ~7 ms. Mypy reads
# any constant of this name as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from _hashlib import HASH
    from typing import BinaryIO


def _fail(message: str, hint: str | None = None) -> WalCommandError:
    return WalCommandError(message, ARCHIVE_FAILED, hint=hint)


def archive_wal(
    wal_path: str,
    wal_name: str,
    archive_dir: str,
    *,
    compress: str | None = None,
    level: int | None = None,
    allow_system_id_change: bool = False,
) -> ArchiveResult:
    """Archive the WAL file at wal_path under wal_name in archive_dir.

    compress: None, "zstd" or "lz4" (stored as NAME.zst / NAME.lz4). allow_system_id_change: accept a
    segment from a different cluster and make its system identifier the archive's from now on.
    Raises WalCommandError (exit code 1, or 2 for bad usage) on any failure; the archive then holds
    either nothing new or, for the name, what it held before.
    """
    try:
        wal = parse_wal_name(wal_name)
    except ValueError as exc:
        raise WalCommandError(str(exc), ARCHIVE_USAGE) from exc
    if compress is not None and compress not in CODECS:
        raise WalCommandError(f"unknown compression {compress!r} (known: {', '.join(CODECS)})", ARCHIVE_USAGE)
    if not os.path.isdir(archive_dir):
        raise _fail(
            f"archive directory {archive_dir} does not exist or is not a directory",
            hint="create it (writable by the server's user) or mount it; pgtool does not create it",
        )
    try:
        src = os.open(wal_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise _fail(f"cannot read {wal_path}: {exc.strerror}") from exc
    try:
        size = os.fstat(src).st_size
        sysid = None
        if wal.has_page_header:
            sysid, seg_size = check_segment_fd(src, size, wal_path, wal_name, wal)
            _check_system_id(archive_dir, sysid, wal_path, allow_system_id_change)
            _check_fork(archive_dir, wal, seg_size)
        removed = _remove_temporaries(archive_dir)
        existing = find_archived(archive_dir, wal_name)
        if existing is None:
            existing = _write_new(src, size, wal_path, wal_name, archive_dir, compress, level)
            if existing is None:
                durable.fsync_path(archive_dir, directory=True)
                final = os.path.join(archive_dir, wal_name + (SUFFIXES[compress] if compress else ""))
                stored = os.stat(final).st_size
                return ArchiveResult(ARCHIVED, final, size, stored, sysid, removed)
        digest = _check_duplicate(existing, src, size, wal_path)
        durable.fsync_path(existing.path)
        try:
            recorded = checksum.expected_checksum(archive_dir, wal_name)
        except CorruptArchiveError:
            recorded = None
        if recorded != digest:
            # Archived before checksums existed (or the record was damaged): the bytes were just
            # compared with PostgreSQL's own copy, so this is the right checksum to record.
            checksum.write_checksum(archive_dir, wal_name, digest)
        durable.fsync_path(archive_dir, directory=True)
        return ArchiveResult(ALREADY_ARCHIVED, existing.path, size, existing.stored_size, sysid, removed)
    except OSError as exc:
        raise _fail(f"archiving {wal_path} into {archive_dir} failed: {exc.strerror or exc}") from exc
    finally:
        os.close(src)


def check_segment_fd(src: int, size: int, wal_path: str, wal_name: str, wal: WalName) -> tuple[int, int]:
    try:
        header = parse_long_header(os.pread(src, LONG_HEADER_SIZE, 0))
    except WalHeaderError as exc:
        raise _fail(f"{wal_path} is not a WAL segment: {exc}") from exc
    if size != header.segment_size:
        raise _fail(
            f"{wal_path} is {size} bytes but its header says segments are {header.segment_size} bytes",
            hint="a truncated or still-growing file; PostgreSQL archives only complete segments",
        )
    expected = wal.segno(header.segment_size) * header.segment_size
    if header.page_address != expected:
        raise _fail(
            f"{wal_path} starts at LSN {format_lsn(header.page_address)}, "
            f"but {wal_name} starts at {format_lsn(expected)}: the name does not match the content"
        )
    return header.system_identifier, header.segment_size


def _check_fork(archive_dir: str, wal: WalName, seg_size: int) -> None:
    """Refuse WAL of timeline T written past the point where the archive's timeline T+1 forked.

    After a failover the promoted standby archives `T+1.history`; an old primary that comes back and
    keeps writing timeline T produces WAL no recovery can follow, and its base backups would make
    retention prune the new timeline. Refusing (exit 1, counted in pg_stat_archiver.failed_count)
    makes the split brain visible at once and keeps its WAL out of the archive. The segment holding
    the switch point itself is accepted: the old primary may legitimately archive it late.
    """
    from pgtool.wal.timelines import fork_point

    try:
        fork = fork_point(archive_dir, wal.timeline)
    except (CorruptArchiveError, ValueError) as exc:
        raise _fail(f"cannot read the timeline history in {archive_dir}: {exc}") from exc
    refuse_past_fork(wal, seg_size, fork, archive_dir)


def refuse_past_fork(wal: WalName, seg_size: int, fork: tuple[int, int] | None, where: str) -> None:
    """The split-brain rule of both archives: `wal` past the point where timeline T+1 forked is refused."""
    if fork is None:
        return
    child, switchpoint = fork
    if wal.segno(seg_size) > switchpoint // seg_size:
        raise _fail(
            f"{wal.name} is WAL of timeline {wal.timeline} past {format_lsn(switchpoint)}, where "
            f"timeline {child} forked from it ({child:08X}.history in {where}): this server is "
            "a former primary still writing after a failover (split brain)",
            hint="stop this server and rebuild it as a standby of the new primary; its WAL is not archived",
        )


def _check_system_id(archive_dir: str, sysid: int, wal_path: str, allow_change: bool) -> None:
    sysid_path = os.path.join(archive_dir, SYSTEM_ID_FILE)
    try:
        recorded = read_system_id(archive_dir)
    except CorruptArchiveError as exc:
        raise _fail(str(exc), hint=f"remove {sysid_path}; the next segment records it again") from exc
    except OSError as exc:
        raise _fail(f"cannot read {sysid_path}: {exc.strerror}") from exc
    if recorded is None:
        # First use of this directory by pgtool (or a pre-existing archive): look at one segment once,
        # and record what it says so that later calls are O(1).
        recorded = _system_id_from_segments(archive_dir)
        if recorded is not None and recorded != sysid and not allow_change:
            _write_system_id(archive_dir, recorded)
    elif recorded == sysid:
        return
    if recorded is not None and recorded != sysid and not allow_change:
        raise _fail(
            f"{wal_path} belongs to database system {sysid}, but archive {archive_dir} holds WAL of "
            f"system {recorded} (recorded in {sysid_path})",
            hint="two clusters must not share one archive: use another --archive-dir, or pass "
            "--allow-system-id-change if this cluster replaces the old one",
        )
    _write_system_id(archive_dir, sysid)


def _system_id_from_segments(archive_dir: str) -> int | None:
    for archived in reversed(list_archive(archive_dir)):
        if not archived.wal.has_page_header:
            continue
        try:
            head = b""
            for chunk in iter_content(archived, verify=False):
                head += chunk
                if len(head) >= LONG_HEADER_SIZE:
                    break
            return parse_long_header(head).system_identifier
        except (CorruptArchiveError, WalHeaderError, OSError):
            continue
    return None


def _write_system_id(archive_dir: str, sysid: int) -> None:
    tmp, fd = durable.create_temp(archive_dir, SYSTEM_ID_FILE)
    try:
        os.write(fd, f"{sysid}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, os.path.join(archive_dir, SYSTEM_ID_FILE))
    except OSError:
        _unlink_quietly(tmp)
        raise


def _remove_temporaries(archive_dir: str) -> list[str]:
    try:
        return durable.remove_stale_temporaries(archive_dir)
    except OSError:
        return []  # cleaning up is best effort; archiving must not fail for it


def _write_new(
    src: int,
    size: int,
    wal_path: str,
    wal_name: str,
    archive_dir: str,
    compress: str | None,
    level: int | None,
) -> ArchivedFile | None:
    """Write a new archived file; None when done, or the ArchivedFile that appeared meanwhile."""
    final = os.path.join(archive_dir, wal_name + (SUFFIXES[compress] if compress else ""))
    try:
        tmp, fd = durable.create_temp(archive_dir, wal_name)
    except OSError as exc:
        raise _fail(f"cannot create a file in archive directory {archive_dir}: {exc.strerror}") from exc
    digest = checksum.new_hash()
    try:
        try:
            if compress:
                _compress(src, fd, size, compress, level, digest)
            else:
                _copy_hashing(src, fd, size, digest)
            os.fsync(fd)
        finally:
            os.close(fd)
        # The record first: whenever the WAL file is visible under its name, its checksum is too.
        # (Two archivers racing on one name with different bytes could leave the loser's record
        # beside the winner's file; restore-wal then refuses it loudly. PostgreSQL runs one archiver.)
        checksum.write_checksum(archive_dir, wal_name, digest.hexdigest())
        durable.publish(tmp, final)
    except FileExistsError:
        _unlink_quietly(tmp)
        existing = find_archived(archive_dir, wal_name)
        if existing is None:
            raise _fail(f"{final} appeared and vanished while archiving {wal_path}") from None
        return existing
    except CodecUnavailableError as exc:
        _unlink_quietly(tmp)
        raise WalCommandError(
            str(exc), ARCHIVE_USAGE, hint="pip install lz4, or use --compress zstd"
        ) from exc
    except OSError as exc:
        _unlink_quietly(tmp)
        raise _fail(
            f"writing {final} failed: {exc.strerror or exc}",
            hint="nothing was archived under that name; PostgreSQL retries",
        ) from exc
    return None


def _copy_hashing(src: int, dst: int, size: int, digest: HASH) -> None:
    offset = 0
    while offset < size:
        chunk = os.pread(src, min(1 << 20, size - offset), offset)
        if not chunk:
            raise OSError(f"{size - offset} bytes missing: the file shrank while archiving")
        digest.update(chunk)
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst, view) :]
        offset += len(chunk)


class _HashingReader:
    """A read-only file object that hashes what the compressor reads."""

    def __init__(self, raw: BinaryIO, digest: HASH) -> None:
        self.raw = raw
        self.digest = digest

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.digest.update(data)
        return data


def _compress(src: int, dst: int, size: int, codec: str, level: int | None, digest: HASH) -> None:
    from pgtool.wal.codecs import compress_stream

    with os.fdopen(src, "rb", closefd=False) as fin, os.fdopen(dst, "wb", closefd=False) as fout:
        compress_stream(codec, _HashingReader(fin, digest), fout, size, level)
        fout.flush()


def _check_duplicate(existing: ArchivedFile, src: int, size: int, wal_path: str) -> str:
    """Compare the archived copy with the source; return the content's SHA-256 when identical."""
    problem = None
    offset = 0
    digest = checksum.new_hash()
    if existing.codec is None and existing.stored_size != size:
        problem = f"{existing.stored_size} bytes versus {size}"
    else:
        try:
            for chunk in iter_content(existing, verify=False):
                if os.pread(src, len(chunk), offset) != chunk:
                    problem = f"contents differ from byte {offset}"
                    break
                digest.update(chunk)
                offset += len(chunk)
            else:
                if offset != size:
                    problem = f"{offset} bytes versus {size}"
        except CorruptArchiveError as exc:
            problem = f"the archived copy cannot be read: {exc}"
    if problem:
        raise _fail(
            f"{existing.path} already exists and differs from {wal_path} ({problem}); "
            "the archived file was left untouched",
            hint="find out which copy is right before removing either",
        )
    return digest.hexdigest()


def _unlink_quietly(path: str) -> None:
    try:  # noqa: SIM105 - contextlib would add an import to the per-segment start-up path
        os.unlink(path)
    except OSError:
        pass
