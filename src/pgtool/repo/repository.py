"""A pgtool backup repository: checksummed, optionally encrypted objects in a local directory, an S3
bucket or an Azure container, behind one API (see docs/repository.md for the contract).

Guarantees on every backend:
- `put_if_absent` is one conditional create (never a check then a write): an identical object already
  there is success, a different one is ObjectDiffers. Used for WAL and small records.
- `put_stream` is a multipart upload: the name shows nothing until the whole object is committed.
- every read verifies the object's checksum (or authentication, when encrypted) and its name; a
  consumer gets the verified content only from `read_bytes`/`read_to_file`, or from `open` once the
  iterator has ended without error.
- ObjectAbsent only when the repository exists and the name holds nothing; any other failure
  (unreachable store, missing bucket, denied, damaged, missing key) is another RepoError.
"""

from __future__ import annotations

import hashlib
import os

from pgtool.repo import keys, layout, objformat
from pgtool.repo.errors import (
    IntegrityError,
    ObjectAbsent,
    ObjectDiffers,
    RepoAbsent,
    RepoError,
    RepoKeyError,
    StoreUnavailable,
)
from pgtool.repo.url import RepoURL, parse_repo_url

# Not typing.TYPE_CHECKING: archive-wal opens a repository once per segment, and a local one loads
# neither obstore (`pgtool.repo.store`) nor typing, pathlib or dataclasses. Mypy reads any constant of
# this name as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping
    from mmap import mmap

    from pgtool.repo.localfs import LocalFiles
    from pgtool.repo.objinfo import ObjectInfo
    from pgtool.repo.store import Store

KEY_FILE_ENV = "PGTOOL_REPO_KEY_FILE"
REPO_ENV = "PGTOOL_REPO"
_RECORD_LIMIT = 64 * 1024
_FILE_CHUNK = 1024 * 1024
_PROOF_LEN = 32


class Repository:
    """Open one with `open_repository`."""

    def __init__(self, store: Store | LocalFiles, record: keys.JSONObject, key: bytes | None) -> None:
        self.store = store
        self.url: RepoURL = store.url
        self.record = record
        self._key = key

    @property
    def encrypted(self) -> bool:
        return self._key is not None

    def where(self, name: str) -> str:
        return self.store.where(name)

    # -- writing -------------------------------------------------------------------------------------

    def put_if_absent(self, name: str, data: bytes | mmap, *, compress: bool = True) -> bool:
        """Store `data` under `name` unless something is there. True: created; False: an identical
        object was already there. ObjectDiffers if a different one is."""
        layout.check_name(name)
        stored = objformat.encode_bytes(name, data, key=self._key, compress=compress)
        if self.store.create(name, stored):
            return True
        # Something holds the name (maybe our own earlier attempt whose answer was lost): compare content.
        existing = hashlib.sha256()
        for chunk in self.open(name):
            existing.update(chunk)
        if existing.digest() != hashlib.sha256(data).digest():
            raise ObjectDiffers(
                f"{self.where(name)} already exists with different content",
                hint="objects are never overwritten; investigate which writer produced which",
            )
        return False

    def put_stream(self, name: str, chunks: Iterable[bytes], *, compress: bool = True) -> int:
        """Stream content into `name` (multipart); returns the content bytes written. Names of streamed
        objects are unique by construction (a backup's stamp); an existing one is refused, but that check
        is a guard, not an atomic guarantee: the clouds' multipart completion has no conditional form here."""
        layout.check_name(name)
        if self.store.head(name) is not None:
            raise ObjectDiffers(f"{self.where(name)} already exists", hint="backups are never overwritten")
        total = 0
        sent = 0
        last = b""  # the last bytes sent: a SHA-256 trailer or a final authentication tag
        complete = False

        def counted() -> Iterator[bytes]:
            nonlocal total
            for chunk in chunks:
                total += len(chunk)
                yield chunk

        def tracked() -> Iterator[bytes]:
            nonlocal sent, last, complete
            for piece in objformat.encode(name, counted(), key=self._key, compress=compress):
                sent += len(piece)
                last = (last + piece)[-_PROOF_LEN:]
                yield piece
            complete = True

        try:
            self.store.put_stream(name, tracked())
        except RepoError as exc:
            # The store may have committed the object and lost its answer: a retried completion then
            # fails (S3: NoSuchUpload, Azure: 400 on the block list) though the object is whole.
            # Same size and same last bytes (a SHA-256 over the content and name, or the final tag of a
            # stream under a fresh random header) prove it is this upload.
            if complete and self._committed(name, sent, last):
                return total
            if isinstance(exc, ObjectAbsent):  # a write never means "absent": the upload vanished
                raise StoreUnavailable(f"cannot write {self.where(name)}: the upload was lost") from None
            raise
        # The store said the object is committed; that it holds every byte sent is checked, not assumed
        # (a multipart completion that left out a part would otherwise be found only at restore).
        found = self.store.head(name)
        if found is None or found.size != sent:
            raise IntegrityError(
                f"{self.where(name)} holds {'nothing' if found is None else f'{found.size} bytes'} after its "
                f"upload of {sent} bytes was acknowledged",
                hint="the store lost part of the upload; the run fails and nothing of it is listed",
            )
        return total

    def _committed(self, name: str, size: int, last: bytes) -> bool:
        try:
            found = self.store.tail(name, len(last))
        except RepoError:
            return False
        return found is not None and found == (size, last)

    def put_file(self, name: str, path: str | os.PathLike[str], *, compress: bool = True) -> int:
        def chunks() -> Iterator[bytes]:
            with open(path, "rb") as src:
                while block := src.read(_FILE_CHUNK):
                    yield block

        return self.put_stream(name, chunks(), compress=compress)

    # -- reading -------------------------------------------------------------------------------------

    def open(self, name: str) -> Iterator[bytes]:
        """The verified content of `name`, streamed; the proof completes when the iterator ends."""
        layout.check_name(name)
        stored = self.store.get_stream(name)
        return objformat.decode(name, stored, key=self._key, where=self.where(name))

    def read_bytes(self, name: str) -> bytes:
        return b"".join(self.open(name))

    def read_to_file(self, name: str, dest: str | os.PathLike[str]) -> int:
        """Write the verified content of `name` to `dest` (0600), atomically: a temporary file beside it
        is renamed into place only after the whole object verified. Returns the bytes written."""
        final = os.fspath(dest)
        tmp = os.path.join(os.path.dirname(final), f".{os.path.basename(final)}.pgtool-tmp-{os.getpid()}")
        total = 0
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                for chunk in self.open(name):
                    out.write(chunk)
                    total += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, final)
        except BaseException as exc:
            try:  # noqa: SIM105 - no contextlib on the per-segment import path
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            if isinstance(exc, OSError):
                # The local side failed (a full spool, a missing directory): one line naming both ends,
                # not a traceback; restore-wal maps it to 126+, never to "absent".
                raise RepoError(
                    f"cannot write {self.where(name)} to {dest}: {exc.strerror or exc}",
                    hint="free space or choose another destination; nothing was left behind",
                ) from None
            raise
        return total

    def exists(self, name: str) -> bool:
        return self.store.head(layout.check_name(name)) is not None

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Objects whose names start with the directory `prefix` ("wal/00000001/"), sorted by name."""
        return sorted(self.store.list(prefix.rstrip("/")), key=lambda info: info.name)

    def delete(self, name: str) -> None:
        """Remove `name`; deleting an absent name is not an error (retention may race another run)."""
        self.store.delete(layout.check_name(name))


def open_repository(
    url: str | RepoURL,
    *,
    key_file: str | os.PathLike[str] | None = None,
    create: bool = False,
    environ: Mapping[str, str] | None = None,
    max_retries: int = 4,
    retry_timeout: float = 60.0,
    timeout: float = 300.0,
) -> Repository:
    """Open the repository at `url`; with `create`, make it if its record is absent (encrypted when a
    key file is given). `key_file` defaults to $PGTOOL_REPO_KEY_FILE. Credentials come from `environ`
    (default os.environ) in each cloud's standard variables."""
    env = os.environ if environ is None else environ
    parsed = url if isinstance(url, RepoURL) else parse_repo_url(url)
    if key_file is None and env.get(KEY_FILE_ENV):
        key_file = env[KEY_FILE_ENV]
    secret = keys.read_key_file(key_file) if key_file is not None else None
    store: Store | LocalFiles
    if parsed.kind == "local":
        # Plain files, stdlib only (pgtool.repo.localfs says why); obstore only for the clouds.
        from pgtool.repo.localfs import LocalFiles

        store = LocalFiles(parsed)
        if create:
            store.make_root()  # only here: a later write into a directory that went away fails
        elif not os.path.isdir(store.root):
            raise RepoAbsent(
                f"no pgtool repository at {parsed.display()} (the directory does not exist)",
                hint="check --repo (an unmounted volume?); archive-wal and backup create the repository "
                "on first use",
            )
    else:
        from pgtool.repo.store import Store

        store = Store(
            parsed, environ=env, max_retries=max_retries, retry_timeout=retry_timeout, timeout=timeout
        )
    where = store.where(layout.RECORD)
    record = _read_record(store, where)
    if record is None:
        if not create:
            raise RepoAbsent(
                f"no pgtool repository at {parsed.display()} ({layout.RECORD} is absent)",
                hint="check --repo; archive-wal and backup create the repository on first use",
            )
        encryption = keys.new_encryption(secret) if secret is not None else None
        store.create(layout.RECORD, keys.new_record(encryption))
        record = _read_record(store, where)  # the winner's record if another process created it first
        if record is None:
            raise RepoError(f"{where} vanished right after it was created")
    params = record.get("encryption")
    if params is None:
        if secret is not None:
            raise RepoKeyError(
                f"the repository {parsed.display()} is not encrypted but a key file was given",
                hint="drop --repo-key-file, or use a new repository for encrypted backups",
            )
        return Repository(store, record, None)
    if secret is None:
        raise RepoKeyError(
            f"the repository {parsed.display()} is encrypted and no key was given",
            hint=f"set --repo-key-file or {KEY_FILE_ENV}",
        )
    return Repository(store, record, keys.unlock(params, secret, parsed.display()))


def _read_record(store: Store | LocalFiles, where: str) -> keys.JSONObject | None:
    try:
        data = bytearray()
        for chunk in store.get_stream(layout.RECORD):
            data += chunk
            if len(data) > _RECORD_LIMIT:
                raise RepoError(f"{where} is larger than {_RECORD_LIMIT} bytes: not a repository record")
    except ObjectAbsent:
        return None
    return keys.parse_record(bytes(data), where)
