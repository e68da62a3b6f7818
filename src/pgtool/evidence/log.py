"""The evidence log: one JSON file per drill record, chained by SHA-256, never overwritten.

A record is a JSON object. Its *body* is every member except `sha256` and `signature`; the body's
canonical bytes (JSON, keys sorted, no spaces, ASCII only) are hashed into `sha256` and signed into
`signature` (optional, Ed25519). `prev_sha256` is the previous record's `sha256`, GENESIS for the first,
and `seq` counts from 1. A record lives in `<dir>/NNNNNNNN-<stamp>.json` (NNNNNNNN = seq): written to a
hidden temporary file, fsynced, then hard-linked to its name (link() refuses an existing name, like
O_EXCL) and the directory fsynced. Appends take a flock on `<dir>/.lock` so two drills never claim the
same seq. The files are plain objects keyed by name: a repository holds them unchanged
(`pgtool.evidence.repo_log`), and the readers here (`verify_chain`, `find`) take either a directory or a
`Records` source, so a chain is checked the same way wherever it is stored.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from pgtool.durable_write import fsync_path, write_via_temporary
from pgtool.errors import OperationError

FORMAT = "pgtool-evidence/1"
GENESIS = "0" * 64
_NAME = re.compile(r"^(\d{8})-(\d{8}T\d{6}Z)\.json$")
_UNSIGNED = ("sha256", "signature")


class UnreadableRecord(OperationError):
    """One record cannot be read or parsed: a break in the chain, not a reason to stop reading it."""


class Records(Protocol):
    """Where a chain's records are: their names in seq order, and each one's bytes."""

    @property
    def label(self) -> str:
        """Where the chain is, for messages: a directory, or a prefix in a repository."""
        ...

    def names(self) -> list[str]:
        """The record names (NNNNNNNN-<stamp>.json), sorted; other names are ignored."""
        ...

    def read(self, name: str) -> bytes:
        """The record's bytes; UnreadableRecord when that record alone cannot be read."""
        ...


@dataclass(frozen=True)
class DirRecords:
    """A chain in a local directory (`<backup-dir>/.evidence`, `<base-dir>/.evidence`)."""

    directory: Path

    @property
    def label(self) -> str:
        return str(self.directory)

    def names(self) -> list[str]:
        return [p.name for p in record_files(self.directory)]

    def read(self, name: str) -> bytes:
        try:
            return (Path(self.directory) / name).read_bytes()
        except OSError as exc:
            raise UnreadableRecord(f"cannot read evidence record {name}: {exc.strerror or exc}") from None


def as_records(where: Path | Records) -> Records:
    return DirRecords(where) if isinstance(where, Path) else where


def parse(name: str, raw: bytes) -> dict[str, Any]:
    """The record `name` holds in `raw`; UnreadableRecord if it is not a JSON object."""
    try:
        data = json.loads(raw)
    except ValueError:
        raise UnreadableRecord(f"evidence record {name} is not valid JSON") from None
    if not isinstance(data, dict):
        raise UnreadableRecord(f"evidence record {name} is not a JSON object")
    return data


def load(records: Records, name: str) -> dict[str, Any]:
    """The record `name` in `records`; UnreadableRecord as for `parse`."""
    return parse(name, records.read(name))


def canonical(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def body_bytes(record: dict[str, Any]) -> bytes:
    """What is hashed and signed: the record without its own digest and signature."""
    return canonical({k: v for k, v in record.items() if k not in _UNSIGNED})


def record_files(directory: Path) -> list[Path]:
    """The record files in `directory`, in name (= seq) order; hidden and other files are ignored."""
    try:
        names = sorted(p.name for p in Path(directory).iterdir() if _NAME.match(p.name))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise OperationError(f"cannot list evidence in {directory}: {exc.strerror or exc}") from None
    return [Path(directory) / n for n in names]


def read_record(path: Path) -> dict[str, Any]:
    """The record in `path`; OperationError if it is unreadable or not a JSON object."""
    return _read(path)[1]


def _read(path: Path) -> tuple[bytes, dict[str, Any]]:
    """The bytes of the record in `path` and the record; UnreadableRecord as for `read_record`."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UnreadableRecord(f"cannot read evidence record {path}: {exc.strerror or exc}") from None
    return raw, parse(path.name, raw)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def append(directory: Path, body: dict[str, Any], sign: Any = None) -> Path:
    """Chain `body` to the newest record in `directory`, sign it with `sign(bytes)` if given, store it.

    Returns the new file. Raises OperationError when it cannot be written (the caller fails the run).
    """
    directory = Path(directory)
    try:
        directory.mkdir(mode=0o750, parents=False, exist_ok=True)
        with _locked(directory):
            files = record_files(directory)
            seq, prev = 1, GENESIS
            if files:
                last = read_record(files[-1])
                if not isinstance(last.get("seq"), int):
                    raise OperationError(
                        f"cannot append evidence to {directory}: the newest record {files[-1].name} "
                        "holds no seq number",
                        hint="pgtool evidence verify --dir ... names what was altered",
                    )
                seq, prev = last["seq"] + 1, str(last.get("sha256", ""))
            now = datetime.now(UTC)
            record = {**body, "format": FORMAT, "seq": seq, "prev_sha256": prev}
            record.setdefault("recorded_at", now.isoformat())
            message = body_bytes(record)
            record["sha256"] = hashlib.sha256(message).hexdigest()
            if sign is not None:
                record["signature"] = sign(message)
            path = directory / f"{seq:08d}-{now.strftime('%Y%m%dT%H%M%SZ')}.json"
            _write_new(path, canonical(record) + b"\n")
            return path
    except OSError as exc:
        raise OperationError(
            f"cannot append evidence to {directory}: {exc.strerror or exc}",
            hint="the drill ran, but without its record it proves nothing: fix the directory and rerun",
        ) from None


def _write_new(path: Path, data: bytes) -> None:
    # os.link fails if the name exists: a record is never overwritten
    write_via_temporary(path, data, install=os.link, exclusive=True)
    fsync_path(path.parent, directory=True)


@dataclass
class ChainCheck:
    """The outcome of `verify_chain`: records read, the breaks found (each naming its file)."""

    records: int = 0
    signed: int = 0
    breaks: list[str] = field(default_factory=list)
    head_sha256: str = GENESIS

    @property
    def ok(self) -> bool:
        return not self.breaks


def verify_chain(where: Path | Records, public_key: Any = None) -> ChainCheck:
    """Check every record: its name, seq, digest, link to the previous one, and signature.

    With `public_key` (an Ed25519PublicKey), every record must carry a valid signature by it.
    A removed record shows as a seq gap and a broken link; an edited one as a digest mismatch;
    a reordered (renamed) one as a name that disagrees with its seq and broken links.
    """
    from pgtool.evidence import signing

    records = as_records(where)
    result = ChainCheck()
    prev_seq, prev_sha = 0, GENESIS
    for name in records.names():
        result.records += 1
        try:
            raw = records.read(name)
            record = parse(name, raw)
        except UnreadableRecord as exc:
            result.breaks.append(f"{name}: {exc.message}")
            prev_seq, prev_sha = int(name[:8]), "?"
            continue
        seq = record.get("seq")
        if not isinstance(seq, int) or seq != int(name[:8]):
            result.breaks.append(f"{name}: its name says record {int(name[:8])} but it holds seq {seq}")
        elif seq != prev_seq + 1:
            missing = f"record {prev_seq + 1}" if seq == prev_seq + 2 else f"records {prev_seq + 1}-{seq - 1}"
            result.breaks.append(f"{name}: {missing} missing before it (removed?)")
        message = body_bytes(record)
        digest = hashlib.sha256(message).hexdigest()
        if record.get("sha256") != digest:
            result.breaks.append(f"{name}: edited (its content hashes to {digest[:12]}..., not its sha256)")
        elif raw != canonical(record) + b"\n":
            # The digest covers the parsed record only: a duplicate member ("outcome":"passed" before the
            # real "outcome":"failed", which the parser drops) or spacing would read differently to a
            # person or another parser yet hash the same. Records are written canonical; anything else
            # was edited.
            result.breaks.append(f"{name}: edited (its bytes are not the canonical form of its content)")
        if record.get("prev_sha256") != prev_sha and prev_sha != "?":
            result.breaks.append(f"{name}: does not follow the record before it (prev_sha256 differs)")
        if "signature" in record or public_key is not None:
            if "signature" not in record:
                result.breaks.append(f"{name}: not signed")
            else:
                problem = signing.check(record["signature"], message, public_key)
                if problem:
                    result.breaks.append(f"{name}: {problem}")
                else:
                    result.signed += 1
        prev_seq = seq if isinstance(seq, int) else int(name[:8])
        prev_sha = str(record.get("sha256"))
    result.head_sha256 = prev_sha
    return result


def find(where: Path | Records, ident: str) -> str:
    """The record name for `ident`: its seq number (3 or 00000003) or its file name."""
    records = as_records(where)
    for name in records.names():
        if name == ident or (ident.isdigit() and int(name[:8]) == int(ident)):
            return name
    raise OperationError(f"no evidence record {ident} in {records.label}", hint="pgtool evidence list ...")
