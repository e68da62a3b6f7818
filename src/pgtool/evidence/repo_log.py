"""The evidence log in a backup repository: `evidence/dumps/NNNNNNNN-<stamp>.json`.

The same records as `pgtool.evidence.log` (same body, chain, digest and signature), stored as repository
objects (checksummed, encrypted with the repository). A record's seq is claimed by a conditional create
(`put_if_absent`), not a lock: of two drills appending at once, one wins the name and the other reads
the new head and tries the next seq. `RepoRecords` reads a chain where it is, so `pgtool evidence
--repo` checks it exactly as `--dir` checks a directory; `download` copies the records into a directory.

A repository holds one chain per kind of drill: `evidence/dumps/` (`verify --repo`) and `evidence/base/`
(`verify --base --repo`, `pgtool.evidence.repo_base`), as a dump and a base-backup directory each hold one.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pgtool.errors import OperationError
from pgtool.evidence import log
from pgtool.repo import IntegrityError, ObjectAbsent, ObjectDiffers, RepoError, Repository

PREFIX = "evidence/dumps/"
CHAINS = {"dumps": PREFIX, "base": "evidence/base/"}
_ATTEMPTS = 10


class RepoRecords:
    """A chain in a repository, read in place (`log.Records`). Every read verifies the object's checksum
    (or authentication): a damaged or missing record is that record's break; an unreachable store or a
    wrong key stops the command, as it says nothing about the chain."""

    def __init__(self, repo: Repository, prefix: str = PREFIX) -> None:
        self.repo, self.prefix = repo, prefix
        self._read: dict[str, bytes] = {}  # report reads each record twice: fetch it once

    @property
    def label(self) -> str:
        return f"{self.prefix} in {self.repo.url.display()}"

    def names(self) -> list[str]:
        return [n[len(self.prefix) :] for n in _records(self.repo, self.prefix)]

    def read(self, name: str) -> bytes:
        if name not in self._read:
            try:
                self._read[name] = self.repo.read_bytes(self.prefix + name)
            except (IntegrityError, ObjectAbsent) as exc:
                raise log.UnreadableRecord(f"damaged object: {exc.message}") from None
        return self._read[name]


def _records(repo: Repository, prefix: str) -> list[str]:
    names = [info.name for info in repo.list(prefix)]
    return sorted(n for n in names if log._NAME.match(n[len(prefix) :]))


def append(repo: Repository, body: dict[str, Any], sign: Any = None, prefix: str = PREFIX) -> str:
    """Chain `body` to the newest record under `prefix`, sign it, store it; where it went."""
    try:
        for _ in range(_ATTEMPTS):
            names = _records(repo, prefix)
            seq, prev = 1, log.GENESIS
            if names:
                last = json.loads(repo.read_bytes(names[-1]))
                if not isinstance(last, dict) or not isinstance(last.get("seq"), int):
                    raise OperationError(
                        f"cannot append evidence: the newest record {repo.where(names[-1])} holds no seq"
                    )
                seq, prev = last["seq"] + 1, str(last.get("sha256", ""))
            now = datetime.now(UTC)
            record = {**body, "format": log.FORMAT, "seq": seq, "prev_sha256": prev}
            record.setdefault("recorded_at", now.isoformat())
            message = log.body_bytes(record)
            record["sha256"] = hashlib.sha256(message).hexdigest()
            if sign is not None:
                record["signature"] = sign(message)
            name = f"{prefix}{seq:08d}-{now.strftime('%Y%m%dT%H%M%SZ')}.json"
            if any(n.startswith(f"{prefix}{seq:08d}-") for n in names):
                continue
            try:
                repo.put_if_absent(name, log.canonical(record) + b"\n")
            except ObjectDiffers:
                continue  # another drill took this name: chain to its record instead
            return repo.where(name)
    except (RepoError, ValueError) as exc:
        raise OperationError(
            f"cannot append evidence to {repo.url.display()}: {exc}",
            hint="the drill ran, but without its record it proves nothing: fix the repository and rerun",
        ) from None
    raise OperationError(f"cannot append evidence to {repo.url.display()}: too many concurrent appends")


def download(repo: Repository, directory: Path, prefix: str = PREFIX) -> int:
    """Copy every record under `prefix` into `directory` (verified as it is read); how many."""
    directory.mkdir(parents=True, exist_ok=True)
    names = _records(repo, prefix)
    for name in names:
        repo.read_to_file(name, directory / name[len(prefix) :])
    return len(names)
