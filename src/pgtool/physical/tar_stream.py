"""Read pg_basebackup tar files whatever their compression: `.tar`, `.tar.gz`, `.tar.lz4`, `.tar.zst`.

Read as a stream (tarfile mode "r|"), never seeking, so a backup of any size costs one sequential
pass. zstd goes through the `zstandard` library and lz4 through the `lz4` library's frame reader (both
pgtool dependencies), so reading a backup starts no process.
Extraction refuses absolute paths, `..`, devices and links pointing outside the destination: a backup
directory may have been tampered with, and the restore runs as root.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import stat
import tarfile
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import IO, Any

from pgtool.errors import OperationError

# Members are checked by `_safe_target` already; without an explicit filter, Python 3.12+ warns and
# 3.14 applies its "data" filter by default. Python 3.11.2 has no filters at all.
_HAS_FILTERS = hasattr(tarfile, "fully_trusted_filter")

# `extract(link_same=...)` reads files up to this size whole to compare them (the headers of unchanged
# relations in an incremental backup are a few bytes).
SMALL_FILE = 64 * 1024

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.lz4", ".tar.zst", ".tar.zstd")


def tar_stem(name: str) -> str | None:
    """`base.tar.lz4` -> `base`; None for files that are not tar archives."""
    for suffix in TAR_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def compression_of(name: str) -> str:
    """The compression of a tar file by its name: none, gzip, lz4 or zstd."""
    if name.endswith((".gz", ".tgz")):
        return "gzip"
    if name.endswith(".lz4"):
        return "lz4"
    if name.endswith((".zst", ".zstd")):
        return "zstd"
    return "none"


@contextlib.contextmanager
def open_stream(path: Path, raw: IO[bytes] | None = None) -> Iterator[IO[bytes] | gzip.GzipFile]:
    """A readable binary stream of the decompressed bytes of `path`, or of `raw` when given (a stream of
    the file's bytes from elsewhere, e.g. a repository object; `path` then only names it)."""
    kind = compression_of(path.name)
    with contextlib.ExitStack() as stack:
        source = raw if raw is not None else stack.enter_context(open(path, "rb"))
        if kind == "none":
            yield source
        elif kind == "gzip":
            with gzip.GzipFile(fileobj=source, mode="rb") as fh:
                yield fh
        elif kind == "zstd":
            import zstandard

            with zstandard.ZstdDecompressor().stream_reader(source, closefd=False) as fh:
                yield fh
        else:
            import lz4.frame

            with lz4.frame.open(source, "rb") as fh:
                try:
                    yield fh
                except RuntimeError as exc:
                    # The frame reader reports corrupt input (a bad checksum, not an lz4 frame) as a
                    # RuntimeError "LZ4F_...": a damaged archive like any other, not a crash.
                    if not str(exc).startswith("LZ4F_"):
                        raise
                    raise OperationError(f"{path} is damaged: {exc}") from None


@contextlib.contextmanager
def open_tar(path: Path, raw: IO[bytes] | None = None) -> Iterator[tarfile.TarFile]:
    """`path` (or `raw`, see `open_stream`) as a streaming TarFile (iterate it once; members come in
    archive order)."""
    with open_stream(path, raw) as stream:
        try:
            tar = tarfile.open(fileobj=stream, mode="r|")  # noqa: SIM115 - closed by the with below
        except tarfile.TarError as exc:
            raise OperationError(f"{path} is not a readable tar archive: {exc}") from None
        with tar:
            yield tar


def member_sizes(path: Path) -> dict[str, int]:
    """Regular files in the tar at `path` and their sizes (reads the whole archive)."""
    sizes: dict[str, int] = {}
    try:
        with open_tar(path) as tar:
            for member in tar:
                if member.isfile():
                    sizes[_normalise(member.name)] = member.size
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise OperationError(f"{path} is damaged: {exc}") from None
    return sizes


def _normalise(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name


def _safe_target(dest: Path, member: tarfile.TarInfo) -> Path:
    name = _normalise(member.name)
    if name.startswith("/") or ".." in Path(name).parts:
        raise OperationError(f"refusing unsafe path in backup archive: {member.name!r}")
    if member.isdev() or member.isfifo():
        raise OperationError(f"refusing device or fifo in backup archive: {member.name!r}")
    if member.issym() or member.islnk():
        link = Path(member.linkname)
        if link.is_absolute() or ".." in link.parts:
            raise OperationError(f"refusing link leaving the data directory: {member.name!r}")
    return dest / name


def extract(
    path: Path,
    dest: Path,
    wanted: Collection[str] | None = None,
    link_same: Path | None = None,
    raw: IO[bytes] | None = None,
) -> int:
    """Extract the tar at `path` into `dest` (which must exist); returns the bytes written.

    raw: read the tar's (compressed) bytes from this stream instead, e.g. a repository object read
    through its verifying reader (`path` then only names it and gives its compression); every safety
    rule below holds the same.

    wanted: when given, only the regular files named there (`base/5/16384`) are written; directories
    always are. The others are read past, never created.
    link_same: a directory holding an earlier copy of the same tree (the previous member of an
    incremental chain, unpacked for pg_combinebackup to read): a small file whose bytes are the same
    there is hard-linked to it instead of written. Creating a file costs more than its bytes, and
    most of a chain member's files are the same small headers as in the member before it. Only for
    copies nobody writes to: the names share one file.
    """
    written = 0
    seen: set[str] = set()
    try:
        with open_tar(path, raw) as tar:
            for member in tar:
                name = _normalise(member.name)
                if not member.isdir():
                    # A name twice is a damaged or foreign tar; writing it again could also write
                    # through a hard link (link_same) into an earlier member's verified copy.
                    if name in seen:
                        raise OperationError(f"{path} holds {member.name!r} twice: damaged or not a backup")
                    seen.add(name)
                if wanted is not None and member.isfile() and name not in wanted:
                    continue
                target = _safe_target(dest, member)
                if link_same is not None and member.isfile() and member.size <= SMALL_FILE:
                    _write_or_link(tar, member, target, link_same / name)
                elif _HAS_FILTERS:
                    tar.extract(member, dest, set_attrs=not member.isdir(), filter="fully_trusted")
                else:
                    tar.extract(member, dest, set_attrs=not member.isdir())
                if member.isdir():
                    os.chmod(target, 0o700)
                written += member.size if member.isfile() else 0
    except (tarfile.TarError, EOFError) as exc:
        raise OperationError(f"{path} is damaged: {exc}") from None
    return written


def _write_or_link(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path, same: Path) -> None:
    with contextlib.closing(tar.extractfile(member) or io.BytesIO()) as fh:
        data = fh.read()
    try:
        earlier = os.lstat(same)
        if stat.S_ISREG(earlier.st_mode) and earlier.st_size == len(data) and same.read_bytes() == data:
            os.link(same, target)
            return
    except OSError:
        pass  # no earlier copy (or not linkable): written below
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as out:
        out.write(data)
    os.chmod(target, member.mode & 0o7777)
    os.utime(target, (member.mtime, member.mtime))


def read_member(path: Path, wanted: str) -> bytes | None:
    """The content of member `wanted` (e.g. `backup_label`), or None if absent."""
    with open_tar(path) as tar:
        for member in tar:
            if _normalise(member.name) == wanted and member.isfile():
                fh: Any = tar.extractfile(member)
                return fh.read() if fh else None
    return None
