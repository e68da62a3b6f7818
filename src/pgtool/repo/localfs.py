"""The store of a local repository (a path or file:///...): plain files, stdlib only.

Why not obstore here (it still serves s3:// and azure://): archive-wal runs once per WAL segment, and
going through obstore cost that path its import and the modules it pulls in (dataclasses, datetime,
pathlib, urllib.parse) on every segment, for what `os` does directly (docs/repository.md has the
figures). The on-disk layout is obstore's LocalStore's, so either reads what the other wrote:
  - object `a/b/c` is the file `<root>/a/b/c`; directories are made as needed;
  - a write goes to a staging file `<final>#<digits>` beside it (created O_EXCL), is fsynced, then
    hard-linked to its final name, which fails if the name exists: an object is never replaced, and
    two writers racing for one name leave exactly one winner, whole;
  - a listing skips staging files (a name whose part after the first '#' is all digits, obstore's rule)
    and directories; object names never contain '#' (`pgtool.repo.layout.check_name`).
Durability: the file is fsynced before it gets its name, and the directory after, as the local WAL
archive always did, so an object survives a power loss once the call that stored it has returned.
"""

from __future__ import annotations

import os

from pgtool.repo.errors import ObjectAbsent, ObjectDiffers, RepoError, StoreUnavailable
from pgtool.repo.objinfo import ObjectInfo

# Not typing.TYPE_CHECKING: archive-wal imports this module once per segment. Mypy reads any constant
# of this name as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from pgtool.repo.url import RepoURL

_ABSENT = (FileNotFoundError, NotADirectoryError, IsADirectoryError)


def is_staging(filename: str) -> bool:
    """A write in progress (or left by a crash), never an object: `<name>#<digits>`."""
    _, sep, suffix = filename.partition("#")
    return bool(sep and suffix and suffix.isascii() and suffix.isdigit())


class LocalFiles:
    """Byte-level operations on one local repository directory, like `pgtool.repo.store.Store`."""

    def __init__(self, url: RepoURL) -> None:
        self.url = url
        self.root = url.local_dir
        self._obstore: object | None = None

    def make_root(self) -> None:
        """Create the repository's directory (and missing parents): only when the repository itself is
        created. Every other write needs it to exist: a directory that vanished (an unmounted volume,
        a removed tree) is an error, never silently recreated on the disk underneath."""
        try:
            _makedirs(self.root)
        except OSError as exc:
            raise StoreUnavailable(f"cannot create directory {self.url.display()}: {exc.strerror}") from None

    @property
    def backend(self) -> object:
        """An obstore LocalStore on the same directory (for object metadata, and for the tests that
        damage objects behind pgtool's back); imported only when asked for."""
        if self._obstore is None:
            from obstore.store import LocalStore

            self._obstore = LocalStore(prefix=self.root, mkdir=True)
        return self._obstore

    def where(self, name: str) -> str:
        return f"{name} in {self.url.display().rstrip('/')}"

    def _file(self, name: str) -> str:
        return os.path.join(self.root, *name.split("/"))

    def _failed(self, exc: OSError, name: str, action: str) -> RepoError:
        return StoreUnavailable(f"cannot {action} {self.where(name)}: {exc.strerror or exc}")

    def _absent(self, name: str) -> RepoError:
        """ObjectAbsent only while the repository directory itself is there."""
        if not os.path.isdir(self.root):
            return StoreUnavailable(
                f"cannot read {self.where(name)}: the repository directory is gone", hint="check --repo"
            )
        return ObjectAbsent(f"{self.where(name)} does not exist")

    # -- writing -------------------------------------------------------------------------------------

    def create(self, name: str, data: bytes) -> bool:
        """Store `data` under `name` only if nothing is there; True if created, False if something
        already was (link() refuses an existing name: no check-then-write)."""
        try:
            return self._publish(name, [data])
        except OSError as exc:
            raise self._failed(exc, name, "write") from None

    def put_stream(self, name: str, chunks: Iterable[bytes]) -> None:
        """The object appears under `name` only once all of it is written and fsynced."""
        try:
            created = self._publish(name, chunks)
        except OSError as exc:
            raise self._failed(exc, name, "write") from None
        if not created:
            raise ObjectDiffers(f"{self.where(name)} already exists", hint="objects are never overwritten")

    def _publish(self, name: str, chunks: Iterable[bytes]) -> bool:
        final = self._file(name)
        directory = os.path.dirname(final)
        tmp, fd = self._staging(final, directory)
        try:
            try:
                for chunk in chunks:
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, final)
            except FileExistsError:
                return False
        finally:
            try:  # noqa: SIM105 - no contextlib on the per-segment import path
                os.unlink(tmp)
            except OSError:
                pass  # a staging file left behind is never listed nor read
        _fsync_dir(directory)
        return True

    def _staging(self, final: str, directory: str) -> tuple[str, int]:
        """A new staging file beside `final` (O_EXCL: never shared with another writer), and its fd."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        serial = 0
        while True:
            tmp = f"{final}#{os.getpid()}{serial:04d}"
            try:
                return tmp, os.open(tmp, flags, 0o666)
            except FileExistsError:
                serial += 1
            except FileNotFoundError:
                if serial > 8:  # the directory keeps vanishing (a concurrent delete): give up
                    raise
                try:
                    _makedirs(directory, stop=self.root)
                except FileNotFoundError:
                    raise StoreUnavailable(
                        f"the repository directory {self.url.display()} is gone (unmounted or removed?): "
                        "nothing was written",
                        hint="mount or restore it; pgtool never recreates a repository's directory "
                        "underneath a write",
                    ) from None
                serial += 1

    def delete(self, name: str) -> None:
        final = self._file(name)
        try:
            os.unlink(final)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise self._failed(exc, name, "delete") from None
        _fsync_dir(os.path.dirname(final))

    # -- reading -------------------------------------------------------------------------------------

    def get_stream(self, name: str, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
        """The stored bytes of `name`, streamed. Raises ObjectAbsent, or RepoError for anything else."""
        try:
            f = open(self._file(name), "rb", buffering=0)  # noqa: SIM115 - closed by the `with` below
        except _ABSENT:
            raise self._absent(name) from None
        except OSError as exc:
            raise self._failed(exc, name, "read") from None
        with f:
            while True:
                try:
                    chunk = f.read(chunk_size)
                except OSError as exc:
                    raise self._failed(exc, name, "read") from None
                if not chunk:
                    return
                yield chunk

    def tail(self, name: str, length: int) -> tuple[int, bytes] | None:
        """(size, last `length` bytes) of the object stored under `name`, None if nothing is there."""
        try:
            with open(self._file(name), "rb", buffering=0) as f:
                size = os.fstat(f.fileno()).st_size
                if size < length:
                    return size, b""
                return size, os.pread(f.fileno(), length, size - length)
        except _ABSENT:
            return None
        except OSError as exc:
            raise self._failed(exc, name, "read") from None

    def head(self, name: str) -> ObjectInfo | None:
        try:
            st = os.stat(self._file(name))
        except _ABSENT:
            absent = self._absent(name)
            if isinstance(absent, ObjectAbsent):
                return None
            raise absent from None
        except OSError as exc:
            raise self._failed(exc, name, "read") from None
        if (st.st_mode & 0o170000) != 0o100000:  # a directory is no object (as with obstore)
            return None
        return ObjectInfo(name, st.st_size)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object under the directory `prefix` ("" for all), in no particular order. A repository
        whose directory is gone is an error (an unmounted volume must not read as an empty archive)."""
        start = self._file(prefix) if prefix else self.root
        if not os.path.isdir(self.root):
            raise StoreUnavailable(
                f"cannot list {self.url.display()}: the repository directory is gone", hint="check --repo"
            )
        try:
            yield from self._walk(start, f"{prefix}/" if prefix else "")
        except OSError as exc:
            raise self._failed(exc, prefix + "*", "list") from None

    def _walk(self, directory: str, relative: str) -> Iterator[ObjectInfo]:
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            # Symbolic links are not followed: a link loop (or one to /) must not hang or widen a listing.
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(entry.path, f"{relative}{entry.name}/")
            elif entry.is_file(follow_symlinks=False) and not is_staging(entry.name):
                try:
                    size = entry.stat(follow_symlinks=False).st_size
                except FileNotFoundError:
                    continue  # deleted meanwhile (retention or pruning in another process)
                yield ObjectInfo(relative + entry.name, size)


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _makedirs(directory: str, stop: str | None = None) -> None:
    """Make `directory` and any missing parents, each new entry fsynced into its parent, so that the
    objects below survive a power loss too. With `stop`, never create `stop` itself or above it
    (FileNotFoundError if it is missing): a repository's directory is made only with the repository."""
    if stop is not None and os.path.normpath(directory) == os.path.normpath(stop):
        if not os.path.isdir(directory):
            raise FileNotFoundError(directory)
        return
    parent = os.path.dirname(directory)
    if parent != directory and not os.path.isdir(parent):
        _makedirs(parent, stop)
    try:
        os.mkdir(directory)
    except FileExistsError:
        return
    _fsync_dir(parent)
