"""`basebackup --repo`, streamed: pg_basebackup's one tar goes straight into the repository, checked
on the way, with no local copy.

`pg_basebackup -D - --format=tar --wal-method=fetch` writes the whole backup as one tar on stdout: the
data directory, the WAL from the backup's start to its end under `pg_wal/` (fetched at the end of the
backup, so the backup stays self-contained as with `--dest`), and `backup_manifest` injected as the
last member (PostgreSQL 13+), with SHA-256 file checksums (`--manifest-checksums=SHA256`).

One pass over the pipe, three threads:
- the main thread runs pg_basebackup (`pgtool.pg.command`: signals forwarded, stderr logged);
- the check thread reads the pipe; each raw block goes to the upload, and its decompressed bytes to
  a streaming tar parser (tarfile "r|") that hashes every member. At the tar's end: the manifest's own
  checksum, every file it lists present with its size and SHA-256, no file it does not list, and every
  WAL segment of its WAL ranges present (`verify`);
- the upload thread feeds `Repository.put_stream` (multipart: nothing is visible until it commits).
  It commits only when pg_basebackup exited 0 and every check passed; otherwise its chunk iterator
  raises and the multipart upload is abandoned. If the store fails first, the pipe is closed and
  pg_basebackup fails on its next write; the store's error is reported.
The caller then stores `backup_manifest` as an object of its own (an incremental needs it without
reading the tar) and the record last (`repo_basebackup`).

What cannot stream (`cannot_stream`; `CannotStream` when pg_basebackup says so): server-side
compression (pg_basebackup cannot inject the manifest into a server-compressed tar), extra tablespaces
(stdout holds one tar), and WAL recycled before pg_basebackup fetched it (a busy server with a small
`wal_keep_size`): the caller then takes the backup through its local spool, with `--wal-method=stream`.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import queue
import tarfile
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import IO, Any, cast

from pgtool.errors import OperationError, PgtoolError
from pgtool.physical import base_verify
from pgtool.physical.base_catalog import MANIFEST_FILE
from pgtool.physical.base_progress import TerminalProgress
from pgtool.physical.base_verify import CheckResult
from pgtool.repo import Repository

_READ = 1024 * 1024
_QUEUE_BLOCKS = 8  # raw blocks in flight between the pipe and the upload
# What pg_verifybackup ignores in a data directory: not in the manifest, never compared.
_IGNORED = ("backup_manifest", "postgresql.auto.conf", "recovery.signal", "standby.signal")


@dataclass(frozen=True)
class Codec:
    """How the tar is compressed on its way: by pg_basebackup on the client (stored as is), or not at
    all (then the repository compresses it with zstd, `compress=True`)."""

    name: str  # what the record says (`compression`)
    object: str  # the object's name under base/<stamp>/
    store_compress: bool


CODECS = {
    "client-lz4": Codec("client-lz4", "base.tar.lz4", False),
    "client-zstd": Codec("client-zstd", "base.tar.zst", False),
    "gzip": Codec("gzip", "base.tar.gz", False),
    "none": Codec("none", "base.tar", True),
}
# --compress -> what streaming tries, in order (pg_basebackup refuses a method its build lacks).
ORDER = {"auto": ("client-lz4", "client-zstd", "none"), "gzip": ("gzip",), "none": ("none",)}


class CannotStream(Exception):
    """This backup cannot stream (`reason`, one line): the caller spools it instead."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def cannot_stream(compress: str) -> str | None:
    """Why a backup with `--compress compress` cannot stream, or None."""
    if compress not in ORDER:
        return (
            f"--compress {compress}: pg_basebackup cannot add the backup manifest to a tar the server "
            "compressed, and a tar on stdout needs it"
        )
    return None


def unsupported(stderr_tail: str) -> str | None:
    """The reason to spool instead, when pg_basebackup's error says stdout cannot carry this backup."""
    if "single tablespace to stdout" in stderr_tail:
        return "the cluster has tablespaces besides pg_default: one tar on stdout cannot carry them"
    if "has already been removed" in stderr_tail:
        return (
            "the server recycled WAL the backup needs before pg_basebackup fetched it (raise "
            "wal_keep_size); the spooled backup streams its WAL alongside"
        )
    return None


class _NotCommitted(Exception):
    """Raised into the upload's chunks when the backup failed or a check did: nothing is stored."""


class _UploadGone(Exception):
    """The upload ended (the store failed) while the pipe still had data: stop reading."""


_END = object()
_ABORT = object()


def _decompressed(raw: _Tee, codec: str) -> IO[bytes]:
    """The tar's bytes, read from `raw` through the codec's own stream reader: each read returns at
    most what was asked, so a block of zeros that compresses a thousandfold never sits in memory."""
    source = cast(IO[bytes], raw)  # read() is all these readers use
    if codec == "client-lz4":
        import lz4.frame

        return cast(IO[bytes], lz4.frame.open(source, "rb"))
    if codec == "client-zstd":
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(source, read_size=_READ, read_across_frames=True)
        return cast(IO[bytes], reader)
    if codec == "gzip":
        return cast(IO[bytes], gzip.GzipFile(fileobj=source, mode="rb"))
    return source


class _Upload:
    """The thread that stores the raw blocks it is handed under `name` (multipart)."""

    def __init__(self, repo: Repository, name: str, compress: bool) -> None:
        self.blocks: queue.Queue[object] = queue.Queue(maxsize=_QUEUE_BLOCKS)
        self.verdict: Future[bool] = Future()  # set by the main thread: pg_basebackup exited 0
        self.done: Future[int] = Future()
        self._thread = threading.Thread(
            target=self._run, args=(repo, name, compress), name="base-upload", daemon=True
        )
        self._thread.start()

    def _chunks(self) -> Iterator[bytes]:
        while (item := self.blocks.get()) is not _END:
            if item is _ABORT:
                raise _NotCommitted
            assert isinstance(item, bytes)
            yield item
        if not self.verdict.result():
            raise _NotCommitted

    def _run(self, repo: Repository, name: str, compress: bool) -> None:
        try:
            self.done.set_result(repo.put_stream(name, self._chunks(), compress=compress))
        except BaseException as exc:
            self.done.set_exception(exc)

    def send(self, item: object) -> None:
        """Hand over a block (or _END, _ABORT); _UploadGone if the upload has ended meanwhile."""
        while not self.done.done():
            try:
                self.blocks.put(item, timeout=0.2)
                return
            except queue.Full:
                continue
        if item is not _ABORT:
            raise _UploadGone

    def join(self) -> None:
        self._thread.join()


class _Tee:
    """A raw file object over the pipe: every block read from it also goes to the upload."""

    def __init__(self, read_fd: int, upload: _Upload) -> None:
        self._pipe = os.fdopen(read_fd, "rb", buffering=0)
        self._upload = upload
        self.eof = False
        self.raw_bytes = 0

    def read(self, size: int = -1) -> bytes:
        block = self._pipe.read(_READ if size is None or size < 0 else min(size, _READ))
        if not block:
            self.eof = True
            return b""
        self.raw_bytes += len(block)
        self._upload.send(block)
        return block

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        """Read the pipe to its end, whatever follows the compressed stream."""
        while self.read(_READ):
            pass

    def close(self) -> None:
        self._pipe.close()  # pg_basebackup's next write fails (EPIPE) instead of blocking


@dataclass
class Streamed:
    """What went into the store: the tar's content bytes and its members' (size, sha256)."""

    files: dict[str, tuple[int, str]] = field(default_factory=dict)
    manifest: bytes = b""
    stored_bytes: int = 0


def _read_tar(tee: _Tee, codec: str, where: str) -> Streamed:
    out = Streamed()
    manifest: list[bytes] = []
    try:
        stream = _decompressed(tee, codec)
        with tarfile.open(fileobj=stream, mode="r|", bufsize=_READ) as tar:
            for member in tar:
                if not member.isfile():
                    continue
                name = member.name.removeprefix("./")
                digest = hashlib.sha256()
                fh: Any = tar.extractfile(member)
                while chunk := fh.read(_READ):
                    digest.update(chunk)
                    if name == MANIFEST_FILE:
                        manifest.append(chunk)
                out.files[name] = (member.size, digest.hexdigest())
        while rest := stream.read(_READ):  # after the end-of-archive blocks: only zeros
            if rest.strip(b"\0"):
                raise OperationError(f"{where}: pg_basebackup's tar stream has data after its end")
    except (_UploadGone, PgtoolError):
        raise
    except Exception as exc:  # tarfile's, EOFError, zlib's, lz4's RuntimeError, zstandard's ZstdError
        raise OperationError(f"{where}: pg_basebackup's tar stream is damaged: {exc}") from None
    tee.drain()
    out.manifest = b"".join(manifest)
    return out


def stream_into(
    repo: Repository,
    name: str,
    argv: list[str],
    env: dict[str, str],
    codec: Codec,
    wal_segment_size: int,
) -> tuple[Streamed, CheckResult]:
    """Run pg_basebackup (`argv`, writing one tar to stdout) into object `name`, checked on the way.

    Commits the object only when pg_basebackup exited 0 and `verify` passed; raises otherwise (the
    store's error first when the store failed; Terminated and the like before anything else)."""
    from pgtool.pg import command

    where = repo.where(name)
    read_fd, write_fd = os.pipe()
    try:
        upload = _Upload(repo, name, codec.store_compress)
        tee = _Tee(read_fd, upload)
    except BaseException:
        os.close(read_fd)
        os.close(write_fd)
        raise
    checked: Future[tuple[Streamed, CheckResult]] = Future()
    cut_short = threading.Event()  # the check failed before pg_basebackup had finished writing

    def check() -> None:
        try:
            streamed = _read_tar(tee, codec.name, where)
            result = verify(streamed, wal_segment_size, where)
            streamed.stored_bytes = tee.raw_bytes
            upload.send(_END)
            checked.set_result((streamed, result))
        except BaseException as exc:
            if not tee.eof and not isinstance(exc, _UploadGone):
                cut_short.set()
            upload.send(_ABORT)
            checked.set_exception(exc)
        finally:
            tee.close()

    checker = threading.Thread(target=check, name="base-check", daemon=True)
    checker.start()
    ok = False
    failed: BaseException | None = None
    progress = TerminalProgress()
    try:
        command.run(
            argv + progress.argv, env=env, stdout=write_fd, what="pg_basebackup", on_progress=progress.line
        )
        ok = True
    except BaseException as exc:
        failed = exc
    finally:
        os.close(write_fd)  # pg_basebackup has exited: the check thread now sees the pipe's end
        progress.end()
    upload.verdict.set_result(ok)
    try:
        checker.join()
        upload.join()
    except BaseException:
        # SIGTERM while the upload commits: let both threads end before unwinding, so that the
        # caller's clean-up finds (and deletes) whatever the store committed. The handler raises once.
        checker.join()
        upload.join()
        raise
    if failed is not None and not isinstance(failed, PgtoolError | OSError):
        raise failed  # SIGTERM and the like win
    stored = upload.done.exception()
    if stored is not None and not isinstance(stored, _NotCommitted):
        raise stored  # the store failed: pg_basebackup's broken pipe is only the echo
    if failed is not None and not cut_short.is_set():
        raise failed
    streamed, result = checked.result()  # a failed check raises here
    upload.done.result()
    return streamed, result


def _manifest_path(entry: dict[str, Any]) -> str:
    if "Path" in entry:
        return str(entry["Path"])
    return bytes.fromhex(str(entry.get("Encoded-Path", ""))).decode("utf-8", "surrogateescape")


def verify(streamed: Streamed, wal_segment_size: int, where: str) -> CheckResult:
    """Check the streamed tar against its manifest; OperationError naming the first difference."""
    if MANIFEST_FILE not in streamed.files:
        raise OperationError(f"{where}: the tar ended without {MANIFEST_FILE}: the backup is incomplete")
    manifest = base_verify.parse_manifest(streamed.manifest, where)
    listed = set()
    for entry in manifest.get("Files", []):
        path = _manifest_path(entry)
        listed.add(path)
        if path not in streamed.files:
            raise OperationError(f"{where}: {path} is in the manifest but not in the tar")
        size, digest = streamed.files[path]
        if size != int(entry["Size"]):
            raise OperationError(f"{where}: {path} has {size} bytes, the manifest says {entry['Size']}")
        algorithm = entry.get("Checksum-Algorithm")
        if algorithm != "SHA256":
            raise OperationError(f"{where}: {path} has a {algorithm} checksum in the manifest, not SHA256")
        if digest != str(entry["Checksum"]).lower():
            raise OperationError(f"{where}: {path} does not match its SHA-256 checksum in the manifest")
    extra = sorted(
        n for n in set(streamed.files) - listed if not n.startswith("pg_wal/") and n not in _IGNORED
    )
    if extra:
        raise OperationError(f"{where}: {extra[0]} is in the tar but not in the manifest")
    ranges = manifest["WAL-Ranges"]
    for segment in base_verify.needed_wal(ranges, wal_segment_size):
        if f"pg_wal/{segment}" not in streamed.files:
            raise OperationError(f"{where}: WAL segment {segment} needed for consistency is missing")
    sysid = manifest.get("System-Identifier")
    return CheckResult(
        start_lsn=ranges[0]["Start-LSN"],
        stop_lsn=ranges[-1]["End-LSN"],
        timeline=int(ranges[0]["Timeline"]),
        system_identifier=str(sysid) if sysid is not None else None,
        method="SHA-256 of every file against the manifest, while streaming",
    )
