"""Reading a migration file safely and turning its text into statements.

Reading: only regular files, up to a size limit, opened non-blocking so a FIFO or a device can never
hang or flood the run (`lint /dev/zero` once read 24 GB).

Parsing: libpg_query's JSON parse tree costs 50-100 times the text once decoded into dicts. A small
file is parsed in one go (the fast path every real migration takes); a large one is parsed in
chunks of whole statements and each chunk's tree is dropped once its statements are checked, so
memory stays within a small multiple of the file. Deeply nested expressions (PostgreSQL accepts
hundreds of nested calls) need more than Python's default recursion limit to decode.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
from collections.abc import Iterator
from typing import Any

from pgtool.errors import UsageError
from pgtool.lint.source import Source

DEFAULT_MAX_FILE_SIZE = 8 * 1024 * 1024
SMALL = 1024 * 1024  # characters: parsed in one go below this
CHUNK = 128 * 1024  # characters per chunk of a large file
MAX_CHUNK = 32 * CHUNK  # a single statement larger than this in a large file is not searched further
# About 3 JSON levels per nested call: enough for thousands of nested calls, well inside the C stack.
RECURSION_LIMIT = 12_000

_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a directory",
}


def read_file(path: str, max_bytes: int) -> bytes:
    """The bytes of the regular file at `path`; UsageError (exit 2) for anything else or too large.

    Other OS errors (permission, missing) propagate as OSError.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UsageError(f"cannot read {path}: symbolic link loop") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = _KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
            raise UsageError(
                f"cannot lint {path}: it is {kind}, not a regular file",
                hint="pass migration files or directories; pipes and devices are refused",
            )
        if info.st_size > max_bytes:
            raise _too_large(path, info.st_size, max_bytes)
        # os.read sized by fstat: a buffered read(max_bytes + 1) allocates the whole limit for every
        # file (measured: three quarters of the reading time of a 1,000-file run). One byte more than
        # the size, so a file that grew since fstat is read on, up to the limit.
        chunks: list[bytes] = []
        got = 0
        want = info.st_size + 1
        while got <= max_bytes:
            piece = os.read(fd, min(want, max_bytes + 1 - got))
            if not piece:
                break
            chunks.append(piece)
            got += len(piece)
            want = 1 << 20
    finally:
        os.close(fd)
    if got > max_bytes:  # grew while being read
        raise _too_large(path, got, max_bytes)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(path: str, size: int, limit: int) -> UsageError:
    return UsageError(
        f"cannot lint {path}: {size} bytes is over the {limit}-byte limit",
        hint="raise it with --max-file-size (e.g. --max-file-size 64MB) if the file is meant to be this big",
    )


def parse_size(value: str) -> int:
    """Bytes from '8MB', '512k', '1048576' (binary multiples); ValueError when malformed."""
    text = value.strip().upper().removesuffix("B").removesuffix("I")
    factor = 1
    for suffix, size in (("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30)):
        if text.endswith(suffix):
            text, factor = text[:-1], size
            break
    number = int(text.strip())
    if number <= 0:
        raise ValueError(value)
    return number * factor


class ParseFailure(Exception):
    """The text does not parse: `offset` is a character offset into the whole file."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


def decode_tree(text: str) -> dict[str, Any]:
    """libpg_query's parse tree of `text` as dicts. Raises pglast's ParseError or RecursionError."""
    from pglast.parser import parse_sql_json

    raw = parse_sql_json(text)
    limit = sys.getrecursionlimit()
    if limit < RECURSION_LIMIT:
        sys.setrecursionlimit(RECURSION_LIMIT)
    try:
        tree: dict[str, Any] = json.loads(raw)
        return tree
    finally:
        if limit < RECURSION_LIMIT:
            sys.setrecursionlimit(limit)


def _parse(text: str, base: int) -> dict[str, Any]:
    from pglast.parser import ParseError

    try:
        return decode_tree(text)
    except ParseError as exc:
        offset = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else None
        raise ParseFailure(str(exc.args[0]), base + (offset if offset is not None else len(text))) from None
    except RecursionError:
        raise ParseFailure("statement nested too deeply for the linter to read", base) from None
    except Exception as exc:  # bad encoding and the like: still one clean finding
        raise ParseFailure(str(exc), base) from None


def statements(text: str) -> Iterator[tuple[str, dict[str, Any], int, int]]:
    """(node type, node, start, end) per statement, character offsets; raises ParseFailure."""
    if len(text) <= SMALL:
        yield from _tree_statements(Source("", text), _parse(text, 0), 0)
        return
    pos = 0
    while pos < len(text):
        chunk, tree = _next_chunk(text, pos)
        yield from _tree_statements(Source("", chunk), tree, pos)
        pos += len(chunk)


def _next_chunk(text: str, pos: int) -> tuple[str, dict[str, Any]]:
    """The next run of whole statements from `pos`, and its tree.

    A cut is tried after a `;` that ends a line. A cut inside a string, comment, dollar quote or
    BEGIN ATOMIC body leaves an unterminated token or an incomplete statement, so the chunk fails to
    parse and is extended to the next cut; an error before the end of the chunk is the file's own.
    """
    first: ParseFailure | None = None
    cut = pos + CHUNK
    while True:
        end = text.find(";\n", cut)
        end = len(text) if end == -1 else end + 1
        chunk = text[pos:end]
        try:
            return chunk, _parse(chunk, pos)
        except ParseFailure as exc:
            first = first or exc
            at_end = exc.offset >= pos + len(chunk) or exc.message.startswith("unterminated")
            if not at_end or end >= len(text):
                raise exc from None
            if end - pos > MAX_CHUNK:
                raise first from None
        cut = end + CHUNK


def _tree_statements(
    source: Source, tree: dict[str, Any], base: int
) -> Iterator[tuple[str, dict[str, Any], int, int]]:
    size = len(source.text)
    for raw in tree.get("stmts", []):
        stmt_node = raw.get("stmt")
        if not stmt_node:
            continue
        kind, node = next(iter(stmt_node.items()))
        location = raw.get("stmt_location", 0)
        start = source.char_offset(location)
        length = raw.get("stmt_len", 0)
        end = source.char_offset(location + length) if length else size
        yield kind, node, base + start, base + end
