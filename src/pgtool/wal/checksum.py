"""The checksum every archived WAL file carries, and the checks restore-wal makes (stdlib only).

Record: beside each archived file `DIR/NAME[.zst|.lz4]` lies `DIR/NAME.sha256`, one line in
`sha256sum` format: the SHA-256 of the file's WAL content (decompressed), two spaces, NAME. Hashing
the content rather than the stored bytes makes the record independent of compression, and lets
`sha256sum -c NAME.sha256` check a plain file by hand.

Order: archive-wal writes the record durably (temporary, fsync, rename, fsync of the directory)
BEFORE the WAL file gets its name, so a visible WAL file always has its record. A crash in between
leaves a record without a file, which the next archive-wal of that name replaces. In an object store
the same record is the object's metadata (or a small object written first), read before the data:
readers only ask `expected_checksum(...)`.

restore-wal trusts nothing it reads: it recomputes the checksum while copying, and checks a segment's
long page header against its name (page address, timeline), the archive's system identifier and the
page magic of a PostgreSQL WAL format. Files archived by pgtool before checksums existed have no
record: they are refused unless the caller allows unverified files explicitly (then with a warning).
"""

from __future__ import annotations

import hashlib
import os

from pgtool import durable_write as durable
from pgtool.wal.codecs import CorruptArchiveError
from pgtool.wal.header import LONG_HEADER_SIZE, WalHeaderError, parse_long_header
from pgtool.wal.names import WalName, format_lsn

# Not typing.TYPE_CHECKING: archive-wal imports this per segment and typing costs ~7 ms. Mypy reads
# any constant of this name as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from _hashlib import HASH
    from collections.abc import Iterable, Iterator

    from pgtool.wal.archive import ArchivedFile

SIDECAR_SUFFIX = ".sha256"
# Every XLOG_PAGE_MAGIC since PostgreSQL 9.0 is 0xD0xx or 0xD1xx.
_MAGIC_HIGH = (0xD0, 0xD1)


class ChecksumMissingError(CorruptArchiveError):
    """The archived file has no checksum record (archived before pgtool recorded them, or tampered)."""


def sidecar_path(archive_dir: str, name: str) -> str:
    """Where the checksum record of WAL file `name` (no compression suffix) lives."""
    return os.path.join(archive_dir, name + SIDECAR_SUFFIX)


def new_hash() -> HASH:
    return hashlib.sha256()


def expected_checksum(archive_dir: str, name: str) -> str | None:
    """The recorded SHA-256 (hex) of WAL file `name`, or None when there is no record.

    Raises CorruptArchiveError when the record exists but is malformed or names another file, and
    OSError when it cannot be read.
    """
    path = sidecar_path(archive_dir, name)
    try:
        with open(path, "rb") as f:
            text = f.read(4096)
    except FileNotFoundError:
        return None
    fields = text.decode("ascii", "replace").split()
    if len(fields) != 2 or fields[1] != name or len(fields[0]) != 64:
        raise CorruptArchiveError(f"{path}: not a checksum record of {name}")
    digest = fields[0].lower()
    if not all(c in "0123456789abcdef" for c in digest):
        raise CorruptArchiveError(f"{path}: not a checksum record of {name}")
    return digest


def write_checksum(archive_dir: str, name: str, digest: str) -> None:
    """Record `digest` for `name` durably (replacing a record whose WAL file is not visible)."""
    tmp, fd = durable.create_temp(archive_dir, name + SIDECAR_SUFFIX)
    try:
        try:
            os.write(fd, f"{digest}  {name}\n".encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, sidecar_path(archive_dir, name))
    except BaseException:
        try:  # noqa: SIM105 - no contextlib on the per-segment path
            os.unlink(tmp)
        except OSError:
            pass
        raise
    durable.fsync_path(archive_dir, directory=True)


def check_segment_header(head: bytes, wal: WalName, system_id: int | None, where: str) -> int:
    """Check a segment's first bytes against its name and the archive; return its segment size.

    Raises CorruptArchiveError naming what does not match: not a long page header, a foreign page
    magic, a page address that is not the named segment's, a timeline newer than the name's, or a
    system identifier other than the archive's (`system_id`, None when the archive records none).
    """
    try:
        header = parse_long_header(head[:LONG_HEADER_SIZE])
    except WalHeaderError as exc:
        raise CorruptArchiveError(f"{where}: {exc}") from exc
    if header.magic >> 8 not in _MAGIC_HIGH:
        raise CorruptArchiveError(f"{where}: page magic 0x{header.magic:04X} is not PostgreSQL WAL")
    expected = wal.segno(header.segment_size) * header.segment_size
    if header.page_address != expected:
        raise CorruptArchiveError(
            f"{where}: the content starts at LSN {format_lsn(header.page_address)}, but {wal.name} "
            f"starts at {format_lsn(expected)}: stored under the wrong name"
        )
    # The first page of a timeline's first segment may still carry the parent's timeline (the
    # segment was copied at the switch), never a newer one.
    if not 1 <= header.timeline <= wal.timeline:
        raise CorruptArchiveError(
            f"{where}: its page header is on timeline {header.timeline}, the name on {wal.timeline}"
        )
    if system_id is not None and header.system_identifier != system_id:
        raise CorruptArchiveError(
            f"{where}: it belongs to database system {header.system_identifier}, the archive to "
            f"{system_id}: WAL of another cluster"
        )
    return header.segment_size


def verified_chunks(
    chunks: Iterable[bytes], wal: WalName, expected: str | None, system_id: int | None, where: str
) -> Iterator[bytes]:
    """Pass `chunks` (decompressed content) through, checking it; raise at the end if it is wrong.

    The caller must not use the content before the generator has finished without an exception.
    expected: the recorded SHA-256, or None to skip it (unverified, allowed by the caller).
    """
    digest = hashlib.sha256()
    head = b""
    checked = not wal.has_page_header
    for chunk in chunks:
        if not checked:
            head += chunk[: LONG_HEADER_SIZE - len(head)]
            if len(head) >= LONG_HEADER_SIZE:
                check_segment_header(head, wal, system_id, where)
                checked = True
        digest.update(chunk)
        yield chunk
    if not checked:
        raise CorruptArchiveError(f"{where}: too short for a WAL segment")
    if expected is not None and digest.hexdigest() != expected:
        raise CorruptArchiveError(
            f"{where}: SHA-256 {digest.hexdigest()[:16]}... differs from the recorded {expected[:16]}... "
            "(bit rot or tampering)"
        )


def verified_content(
    archive_dir: str, archived: ArchivedFile, *, allow_unverified: bool = False
) -> Iterator[bytes]:
    """Yield the decompressed content of `archived` (an archive.ArchivedFile), fully checked.

    Raises ChecksumMissingError when the file has no checksum record (unless allow_unverified),
    CorruptArchiveError for any mismatch (after the last chunk for the checksum: use the content
    only once the generator has finished), OSError when something cannot be read.
    """
    from pgtool.wal.archive import iter_content, read_system_id

    expected = expected_checksum(archive_dir, archived.name)
    if expected is None and not allow_unverified:
        record = os.path.basename(sidecar_path(archive_dir, archived.name))
        raise ChecksumMissingError(f"{archived.path} has no checksum record ({record})")
    system_id = read_system_id(archive_dir) if archived.wal.has_page_header else None
    yield from verified_chunks(iter_content(archived), archived.wal, expected, system_id, archived.path)


def verify_archived(archive_dir: str, archived: ArchivedFile) -> str | None:
    """Read and check one archived file; None when it is sound, else the problem in one line."""
    try:
        for _chunk in verified_content(archive_dir, archived):
            pass
    except (CorruptArchiveError, OSError) as exc:
        return str(exc)
    except Exception as exc:  # a codec missing or failing: still not verified
        return f"{archived.path}: {exc}"
    return None
