"""Where each kind of object lives in a repository (one layout on every backend):

    pgtool.repo.json                     the repository record (format, encryption parameters, key check)
    wal/<TLI>/<file>                     archived WAL segments, .history and .backup files, by timeline
    base/<stamp>/<file>                  base backups
    dumps/<db-encoded>/<stamp>/<file>    logical dumps, per database

Names are '/'-separated, relative, with no empty, '.' or '..' segment and none of '#', '\\', NUL
(the local store keeps its in-progress uploads under '#' names).
"""

from __future__ import annotations

from pgtool.repo.errors import RepoUsageError

RECORD = "pgtool.repo.json"
WAL = "wal"
BASE = "base"
DUMPS = "dumps"
# No `re` at import time: archive-wal reaches wal_name once per segment, where `re` (and the enum and
# functools it loads) would be most of this module's cost; backup stamps compile their pattern on use.
_HEX = frozenset("0123456789ABCDEF")
_STAMP = r"^[0-9A-Za-z][0-9A-Za-z._:-]{0,127}$"
_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def check_name(name: str) -> str:
    """`name` if it is a valid object name, else RepoUsageError."""
    parts = name.split("/")
    if not name or any(p in ("", ".", "..") for p in parts) or any(c in name for c in "#\\\x00"):
        raise RepoUsageError(f"invalid repository object name {name!r}")
    return name


def wal_name(filename: str) -> str:
    """The object name of a WAL segment, history or backup-label file (timeline from its name)."""
    if not _is_wal_file(filename):
        raise RepoUsageError(f"{filename!r} is not a WAL file name")
    return f"{WAL}/{filename[:8]}/{filename}"


def _is_hex(text: str, length: int) -> bool:
    return len(text) == length and _HEX.issuperset(text)


def _is_wal_file(name: str) -> bool:
    """TTTTTTTT + 16 hex digits [.partial | .OOOOOOOO.backup], or TTTTTTTT.history (uppercase hex)."""
    if not _is_hex(name[:8], 8):
        return False
    rest = name[8:]
    if rest == ".history":
        return True
    if not _is_hex(rest[:16], 16):
        return False
    suffix = rest[16:]
    if suffix in ("", ".partial"):
        return True
    return len(suffix) == 16 and suffix.endswith(".backup") and suffix[0] == "." and _is_hex(suffix[1:9], 8)


def encode_db(dbname: str) -> str:
    """A database name as one path segment: bytes outside [A-Za-z0-9_-] as %XX, so every name (with
    '/', '.', spaces, or SQL_ASCII bytes kept as surrogates) maps to a distinct, reversible segment."""
    raw = dbname.encode("utf-8", "surrogateescape")
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in raw) or "%"


def decode_db(segment: str) -> str:
    if segment == "%":
        return ""
    out = bytearray()
    i = 0
    while i < len(segment):
        if segment[i] == "%":
            out.append(int(segment[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(ord(segment[i]))
            i += 1
    return out.decode("utf-8", "surrogateescape")


def _stamp(stamp: str) -> str:
    import re

    if not re.match(_STAMP, stamp):
        raise RepoUsageError(f"invalid backup stamp {stamp!r}")
    return stamp


def base_prefix(stamp: str) -> str:
    return f"{BASE}/{_stamp(stamp)}/"


def dump_prefix(dbname: str, stamp: str) -> str:
    return f"{DUMPS}/{encode_db(dbname)}/{_stamp(stamp)}/"
