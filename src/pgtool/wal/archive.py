"""The WAL archive directory as pgtool writes it, and how to read it (stdlib only).

Layout of an archive directory DIR:

    DIR/<wal name>                 stored as is
    DIR/<wal name>.zst             zstd (one frame, content size + checksum)
    DIR/<wal name>.lz4             lz4 frame (content checksum), when the lz4 package is installed
    DIR/.pgtool-system-identifier  the system identifier of the cluster the archive belongs to (decimal)
    DIR/.pgtool-tmp.*              temporaries of archive-wal runs in progress (or killed); never WAL

<wal name> is any name `pgtool.wal.names.parse_wal_name` accepts. A name is stored at most once in
practice; readers prefer the plain file, then .zst, then .lz4. Anything else in DIR is ignored.

Other modules (basebackup retention, recover, verify) should use these helpers rather than globbing:
    list_archive(DIR)             every archived WAL file, in WAL order, temporaries ignored
    find_archived(DIR, name)      one file by WAL name (without suffix), or None
    iter_content(path_or_file)    its decompressed, verified bytes in chunks
    read_archived(DIR, name)      the whole decompressed content (small files: .history, .backup)
"""

from __future__ import annotations

import os

from pgtool.durable_write import TEMP_PREFIX
from pgtool.wal.codecs import SUFFIXES, CorruptArchiveError, codec_of, decompress_chunks
from pgtool.wal.header import LONG_HEADER_SIZE, WalHeaderError, parse_long_header
from pgtool.wal.names import WalName, parse_wal_name

# Not typing.TYPE_CHECKING: archive-wal imports this per segment and typing costs ~7 ms. Mypy reads
# any constant of this name as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Protocol

    class ContentSource(Protocol):
        def chunks(self, archived: ArchivedFile) -> Iterator[bytes]: ...


SYSTEM_ID_FILE = ".pgtool-system-identifier"
_READ_CHUNK = 1024 * 1024

__all__ = [
    "SYSTEM_ID_FILE",
    "TEMP_PREFIX",
    "ArchivedFile",
    "CorruptArchiveError",
    "find_archived",
    "is_temporary",
    "iter_content",
    "list_archive",
    "read_archived",
    "read_system_id",
    "stored_names",
]


class ArchivedFile:
    """One WAL file in the archive.

    name: the WAL file name without compression suffix; wal: it parsed; path: the file on disk;
    codec: "zstd", "lz4" or None (stored plain); stored_size: bytes on disk. source: None for a file in
    an archive directory; for an object in a backup repository, what streams its verified content
    (`pgtool.wal.repo_archive.RepoWal`; `path` is then the object's name).
    """

    __slots__ = ("codec", "name", "path", "source", "stored_size", "wal")

    def __init__(
        self,
        name: str,
        wal: WalName,
        path: str,
        codec: str | None,
        stored_size: int,
        source: ContentSource | None = None,
    ) -> None:
        self.name = name
        self.wal = wal
        self.path = path
        self.codec = codec
        self.stored_size = stored_size
        self.source = source

    def __repr__(self) -> str:
        return f"ArchivedFile({self.path!r})"


def is_temporary(filename: str) -> bool:
    """True for archive-wal's temporary files (in progress or left by a killed run)."""
    return filename.startswith(TEMP_PREFIX)


def stored_names(name: str) -> list[str]:
    """The file names under which WAL file `name` may be stored, in the order readers prefer them."""
    return [name] + [name + suffix for suffix in SUFFIXES.values()]


def _split_stored(filename: str) -> tuple[str, str | None] | None:
    codec = codec_of(filename)
    base = filename[: -len(SUFFIXES[codec])] if codec else filename
    try:
        parse_wal_name(base)
    except ValueError:
        return None
    return base, codec


def find_archived(archive_dir: str, name: str) -> ArchivedFile | None:
    """The archived copy of WAL file `name` (no suffix), or None when it is not in the archive.

    Raises OSError for errors other than "not there" (e.g. the directory is unreadable).
    """
    wal = parse_wal_name(name)
    for stored in stored_names(name):
        path = os.path.join(archive_dir, stored)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        return ArchivedFile(name, wal, path, codec_of(stored), st.st_size)
    return None


def list_archive(archive_dir: str) -> list[ArchivedFile]:
    """Every WAL file in the archive, sorted by (timeline, log, seg, kind); a .history file sorts as
    segment 0 of its timeline.

    Temporaries, the system identifier file and unrelated files are skipped. When a name is stored
    twice (plain and compressed), the preferred copy is listed once.
    """
    found: dict[str, ArchivedFile] = {}
    rank: dict[str | None, int] = {None: 0, **{codec: i + 1 for i, codec in enumerate(SUFFIXES)}}
    with os.scandir(archive_dir) as entries:
        for entry in entries:
            if is_temporary(entry.name):
                continue
            split = _split_stored(entry.name)
            if split is None or not entry.is_file(follow_symlinks=True):
                continue
            base, codec = split
            previous = found.get(base)
            if previous is not None and rank[previous.codec] <= rank[codec]:
                continue
            found[base] = ArchivedFile(
                base, parse_wal_name(base), entry.path, codec, entry.stat(follow_symlinks=True).st_size
            )
    return sorted(found.values(), key=lambda f: (f.wal, f.name))


def iter_content(archived: ArchivedFile | str, *, verify: bool = True) -> Iterator[bytes]:
    """Yield the decompressed content of an archived file in chunks.

    archived: an ArchivedFile or a path (the codec is taken from the suffix, the WAL name from the rest).
    With verify (the default), a segment or .partial file must start with a valid long page header and
    be exactly its header's segment size long. Raises CorruptArchiveError when the content is damaged
    (truncated, corrupt compression, wrong size) and OSError when the file cannot be read.
    """
    if isinstance(archived, ArchivedFile) and archived.source is not None:
        yield from _checked(archived.source.chunks(archived), archived.wal, archived.path, verify)
        return
    path = archived.path if isinstance(archived, ArchivedFile) else archived
    codec = codec_of(path)
    split = _split_stored(os.path.basename(path))
    wal = split and parse_wal_name(split[0])
    with open(path, "rb") as f:
        chunks = decompress_chunks(codec, f) if codec else iter(lambda: f.read(_READ_CHUNK), b"")
        yield from _checked(chunks, wal or None, path, verify)


def _checked(chunks: Iterator[bytes], wal: WalName | None, path: str, verify: bool) -> Iterator[bytes]:
    """`chunks`, checked (with verify) against the segment size of the long page header."""
    if not (verify and wal and wal.has_page_header):
        yield from chunks
        return
    total = 0
    expected: int | None = None
    head = b""
    for chunk in chunks:
        if expected is None:
            head += chunk[: LONG_HEADER_SIZE - len(head)]
            if len(head) >= LONG_HEADER_SIZE:
                try:
                    expected = parse_long_header(head).segment_size
                except WalHeaderError as exc:
                    raise CorruptArchiveError(f"{path}: {exc}") from exc
        total += len(chunk)
        if expected is not None and total > expected:
            raise CorruptArchiveError(f"{path}: longer than the segment size {expected}")
        yield chunk
    if expected is None:
        raise CorruptArchiveError(f"{path}: too short for a WAL segment ({total} bytes)")
    if total != expected:
        raise CorruptArchiveError(f"{path}: {total} bytes, but the segment size is {expected}")


def read_archived(archive_dir: str, name: str) -> bytes:
    """The whole decompressed, verified content of WAL file `name`.

    Meant for small files (.history, .backup). Raises FileNotFoundError when it is not archived,
    CorruptArchiveError when it is damaged.
    """
    archived = find_archived(archive_dir, name)
    if archived is None:
        raise FileNotFoundError(os.path.join(archive_dir, name))
    return b"".join(iter_content(archived))


def read_system_id(archive_dir: str) -> int | None:
    """The system identifier recorded for the archive, or None when none is recorded yet."""
    try:
        with open(os.path.join(archive_dir, SYSTEM_ID_FILE), encoding="ascii") as f:
            text = f.read().strip()
    except FileNotFoundError:
        return None
    try:
        return int(text)
    except ValueError as exc:
        raise CorruptArchiveError(
            f"{os.path.join(archive_dir, SYSTEM_ID_FILE)} does not hold a system identifier"
        ) from exc
