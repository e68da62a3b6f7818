"""pgtool's object format: one framed layout on every backend, so integrity never depends on what a
store keeps in metadata.

    header   = b"PGTR" | version (1 byte, =1) | flags (1 byte: 1 = zstd, 2 = encrypted)
    plain    : header | payload | sha256(DOMAIN | name | 0x00 | header | payload)      (32-byte trailer)
    encrypted: header | secretstream header (24 bytes) | frames
               frame = u32 big-endian length | libsodium secretstream xchacha20poly1305 message
               every message authenticates (header | name) as associated data; the last one carries
               TAG_FINAL and nothing may follow it.

`payload` is the zstd stream of the content when flag 1 is set (compression before encryption), else
the content. Binding the object's name into the checksum and the associated data means an object
copied or renamed under another name (segment X served as segment Y) fails verification too.

Decoding yields content as it streams, but a plain object is only proven at its end (the trailer) and
an encrypted one only at TAG_FINAL: consumers commit (rename into place, report success) only after
the iterator is exhausted without error.
"""

from __future__ import annotations

import hashlib
import os
import struct
import sys

from pgtool.repo.errors import IntegrityError

# Not typing.TYPE_CHECKING: archive-wal encodes one object per segment. Mypy reads any constant of this
# name as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from mmap import mmap
    from types import ModuleType

MAGIC = b"PGTR"
VERSION = 1
FLAG_ZSTD = 1
FLAG_ENCRYPTED = 2
HEADER_LEN = 6
TRAILER_LEN = 32
CHUNK = 1024 * 1024  # plaintext per encrypted message: bounds memory on both sides
# libsodium's secretstream constants (fixed by its format; tests/repo check them against PyNaCl's), so
# that nacl.bindings, ~20 ms of import, loads only for an encrypted repository.
_ABYTES = 17
_SS_HEADER = 24
_TAG_FINAL = 3
# zstd level 1: on WAL it is both faster and smaller than level 3 (benchdata/archive-wal-s3.md), and
# archive-wal pays compression on PostgreSQL's critical path once per segment.
ZSTD_LEVEL = 1
_DOMAIN = b"pgtool-object-v1\x00"


_ZSTD: list[ModuleType] = []


def zstd() -> ModuleType:
    """python-zstandard's C backend (`zstandard.backend_c`, the module its package re-exports on
    CPython), loaded by itself: the package's __init__ imports `platform` and `typing` only to pick a
    backend, which cost archive-wal more CPU per segment than everything else it imports for a local
    repository. Registered under its own name, so a later `import zstandard` reuses it; if it cannot
    be found that way (another layout, another interpreter), the package as usual."""
    if not _ZSTD:
        _ZSTD.append(_zstd_backend_c() or __import__("zstandard"))
    return _ZSTD[0]


def _zstd_backend_c() -> ModuleType | None:
    name = "zstandard.backend_c"
    if name in sys.modules:
        return sys.modules[name]
    from importlib.machinery import EXTENSION_SUFFIXES, ExtensionFileLoader, ModuleSpec

    for entry in sys.path:
        for suffix in EXTENSION_SUFFIXES:
            path = os.path.join(entry or ".", "zstandard", "backend_c" + suffix)
            if not os.path.isfile(path):
                continue
            loader = ExtensionFileLoader(name, path)
            try:
                module = loader.create_module(ModuleSpec(name, loader, origin=path))
                loader.exec_module(module)
            except ImportError:
                return None
            sys.modules[name] = module
            return module
    return None


def _rechunk(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Pieces of exactly `size` bytes (the last one shorter, possibly empty only if all input was)."""
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]
    yield bytes(buf)


def _compressed(chunks: Iterable[bytes]) -> Iterator[bytes]:
    comp = zstd().ZstdCompressor(level=ZSTD_LEVEL).compressobj()
    for chunk in chunks:
        out = comp.compress(chunk)
        if out:
            yield out
    yield comp.flush()


def encode(
    name: str, chunks: Iterable[bytes], *, key: bytes | None, compress: bool = True
) -> Iterator[bytes]:
    """The stored form of the content in `chunks` under `name`, streamed."""
    header = MAGIC + bytes([VERSION, (FLAG_ZSTD if compress else 0) | (FLAG_ENCRYPTED if key else 0)])
    payload = _compressed(chunks) if compress else chunks
    yield header
    if key is None:
        digest = hashlib.sha256(_DOMAIN + name.encode() + b"\x00" + header)
        for piece in payload:
            if piece:
                digest.update(piece)
                yield piece
        yield digest.digest()
        return
    from nacl import bindings as sodium

    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    yield sodium.crypto_secretstream_xchacha20poly1305_init_push(state, key)
    ad = header + name.encode()
    pieces = _rechunk(payload, CHUNK)
    current = next(pieces)
    for following in pieces:  # look one ahead: the last message must carry TAG_FINAL
        ct = sodium.crypto_secretstream_xchacha20poly1305_push(state, current, ad, 0)
        yield struct.pack(">I", len(ct)) + ct
        current = following
    ct = sodium.crypto_secretstream_xchacha20poly1305_push(state, current, ad, _TAG_FINAL)
    yield struct.pack(">I", len(ct)) + ct


def encode_bytes(name: str, data: bytes | mmap, *, key: bytes | None, compress: bool = True) -> bytes:
    """The stored form of `data` under `name`, whole: `encode` for one object in memory (a WAL
    segment, maybe mapped), compressed in one call (no stream; the frame records its content size)."""
    if key is not None:
        return b"".join(encode(name, [bytes(data)], key=key, compress=compress))
    header = MAGIC + bytes([VERSION, FLAG_ZSTD if compress else 0])
    payload = zstd().ZstdCompressor(level=ZSTD_LEVEL).compress(data) if compress else data
    digest = hashlib.sha256(_DOMAIN + name.encode() + b"\x00" + header)
    digest.update(payload)
    return b"".join((header, payload, digest.digest()))


class _Reader:
    """Exact-length reads over a chunk iterator."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self._buf = bytearray()

    def read(self, n: int) -> bytes:
        while len(self._buf) < n:
            try:
                self._buf += next(self._it)
            except StopIteration:
                break
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def rest(self) -> Iterator[bytes]:
        if self._buf:
            yield bytes(self._buf)
            self._buf.clear()
        yield from self._it


def read_header(first: bytes, where: str) -> int:
    """The flags of a stored object, from its first bytes; IntegrityError if it is not pgtool's."""
    if len(first) < HEADER_LEN or first[:4] != MAGIC:
        raise IntegrityError(f"{where} is not a pgtool repository object (bad header)", hint=_TAMPER_HINT)
    if first[4] != VERSION:
        raise IntegrityError(f"{where} has object format version {first[4]}; this pgtool reads {VERSION}")
    if first[5] & ~(FLAG_ZSTD | FLAG_ENCRYPTED):
        raise IntegrityError(f"{where} has unknown flags {first[5]:#x}", hint=_TAMPER_HINT)
    return first[5]


_TAMPER_HINT = "the object was altered, truncated or damaged in the store; do not use it"


def decode(name: str, stored: Iterable[bytes], *, key: bytes | None, where: str) -> Iterator[bytes]:
    """The content of a stored object, streamed and verified (see the module docstring for when)."""
    reader = _Reader(stored)
    header = reader.read(HEADER_LEN)
    flags = read_header(header, where)
    if flags & FLAG_ENCRYPTED and key is None:
        # `key is None` only for a repository whose record says it is not encrypted (an encrypted one
        # is never opened without its key), so this flag was flipped or the object planted: damage,
        # not a missing key.
        raise IntegrityError(f"{where} is marked encrypted but the repository is not", hint=_TAMPER_HINT)
    if not flags & FLAG_ENCRYPTED and key is not None:
        # An encrypted repository never holds a cleartext object: one here was planted.
        raise IntegrityError(f"{where} is not encrypted but the repository is", hint=_TAMPER_HINT)
    payload = (
        _plain_payload(name, header, reader, where)
        if key is None
        else _open(name, header, reader, key, where)
    )
    if not flags & FLAG_ZSTD:
        yield from payload
        return
    codec = zstd()
    dec = codec.ZstdDecompressor().decompressobj()
    try:
        for piece in payload:
            out = dec.decompress(piece)
            if out:
                yield out
    except codec.ZstdError as exc:
        raise IntegrityError(f"{where}: damaged compressed data ({exc})", hint=_TAMPER_HINT) from None
    if not dec.eof:
        raise IntegrityError(f"{where}: compressed data ends early", hint=_TAMPER_HINT)


def _plain_payload(name: str, header: bytes, reader: _Reader, where: str) -> Iterator[bytes]:
    digest = hashlib.sha256(_DOMAIN + name.encode() + b"\x00" + header)
    held = b""  # the last TRAILER_LEN bytes seen: the trailer, once the stream ends
    for chunk in reader.rest():
        data = held + chunk
        held = data[-TRAILER_LEN:]
        body = data[: len(data) - len(held)]
        if body:
            digest.update(body)
            yield body
    if len(held) < TRAILER_LEN or held != digest.digest():
        raise IntegrityError(f"{where} failed its checksum", hint=_TAMPER_HINT)


def _open(name: str, header: bytes, reader: _Reader, key: bytes, where: str) -> Iterator[bytes]:
    ss_header = reader.read(_SS_HEADER)
    if len(ss_header) < _SS_HEADER:
        raise IntegrityError(f"{where} is truncated", hint=_TAMPER_HINT)
    from nacl import bindings as sodium
    from nacl.exceptions import CryptoError

    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    try:
        sodium.crypto_secretstream_xchacha20poly1305_init_pull(state, ss_header, key)
    except (CryptoError, ValueError):
        raise IntegrityError(f"{where}: damaged encryption header", hint=_TAMPER_HINT) from None
    ad = header + name.encode()
    while True:
        length_bytes = reader.read(4)
        if len(length_bytes) < 4:
            raise IntegrityError(f"{where} is truncated (no final block)", hint=_TAMPER_HINT)
        (length,) = struct.unpack(">I", length_bytes)
        if length < _ABYTES or length > CHUNK + _ABYTES:
            raise IntegrityError(f"{where}: damaged block length", hint=_TAMPER_HINT)
        ct = reader.read(length)
        if len(ct) < length:
            raise IntegrityError(f"{where} is truncated", hint=_TAMPER_HINT)
        try:
            piece, tag = sodium.crypto_secretstream_xchacha20poly1305_pull(state, ct, ad)
        except (CryptoError, ValueError):
            raise IntegrityError(f"{where} failed authentication", hint=_TAMPER_HINT) from None
        if piece:
            yield piece
        if tag == _TAG_FINAL:
            break
    if reader.read(1):
        raise IntegrityError(f"{where} has data after its final block", hint=_TAMPER_HINT)
