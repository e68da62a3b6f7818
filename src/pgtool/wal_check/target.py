"""Where the WAL archive is, as `pgtool check` sees it: a backup repository (`--repo`) or an archive
directory (`--archive-dir`). Both answer the same questions: can it be reached and written (a probe),
whose WAL does it hold (system identifier), is segment X there, and does X read back verified.

Each answer about reachability is a `Status` (state, message, fix) rather than an exception, because a
check reports every problem it finds instead of stopping at the first.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pgtool.wal.archive import ArchivedFile, find_archived, read_system_id
from pgtool.wal_check.model import OK, PROBLEM, WARNING

if TYPE_CHECKING:
    from pgtool.repo import Repository
    from pgtool.wal.repo_archive import RepoWal

PROBE_PREFIX = "check"  # repository objects check/<host>-<pid>-<random>: pgtool's own, never WAL


@dataclass(frozen=True)
class Status:
    state: str
    message: str
    fix: str = ""

    @property
    def usable(self) -> bool:
        """The archive can be read (the end-to-end check can look for its segment)."""
        return self.state == OK


def probe_token() -> str:
    """`<host>-<pid>-<random>`: unique per run, and only characters every store takes in a name."""
    host = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())[:64] or "host"
    return f"{host}-{os.getpid()}-{os.urandom(4).hex()}"


class RepoTarget:
    """A backup repository. `open_repository` is retried by `check()` until the record exists, because
    archive-wal creates the repository on first use: a fresh setup has none until the first segment."""

    kind = "repository"

    def __init__(self, url: str, key_file: str | None, timeout: float) -> None:
        from pgtool.repo import parse_repo_url

        self.url = url
        self.display = parse_repo_url(url).display()  # RepoUsageError (exit 2) for a malformed URL
        self.key_file = key_file
        self.timeout = timeout
        self.wal: RepoWal | None = None

    def check(self) -> Status:
        """Open the repository (record, key) and prove writing with a probe object, deleted after."""
        from pgtool.repo import RepoAbsent, RepoError, RepoKeyError, StoreUnavailable

        try:
            repo = self._open()
        except RepoKeyError as exc:
            return Status(PROBLEM, exc.message, exc.hint or "give the repository's key with --repo-key-file")
        except StoreUnavailable as exc:
            return Status(
                PROBLEM,
                exc.message,
                exc.hint or "check the endpoint, the credentials (AWS_*, AZURE_STORAGE_*) and the bucket",
            )
        except RepoAbsent as exc:
            # No record yet: archive-wal makes it on first use, which the end-to-end check proves.
            return Status(WARNING, exc.message, "archive-wal creates it on its first segment")
        except RepoError as exc:
            return Status(PROBLEM, exc.message, exc.hint or "check --repo")
        name = f"{PROBE_PREFIX}/{probe_token()}"
        data = f"pgtool check probe {name}\n".encode()
        try:
            repo.put_if_absent(name, data)
            try:
                if repo.read_bytes(name) != data:
                    return Status(PROBLEM, f"{repo.where(name)} read back different bytes", "check the store")
            finally:
                repo.delete(name)
            if repo.exists(name):
                return Status(
                    PROBLEM,
                    f"{repo.where(name)} is still there after its delete",
                    "allow deletes (retention needs them), then remove the object",
                )
        except RepoError as exc:
            return Status(
                PROBLEM,
                f"the repository is readable but a probe write, read and delete failed: {exc.message}",
                exc.hint or "grant the credentials write and delete on the bucket or container",
            )
        how = "encrypted, key right" if repo.encrypted else "not encrypted"
        return Status(OK, f"{self.display}: reachable, record read ({how}), probe written, read and deleted")

    def _open(self) -> Repository:
        from pgtool.repo import open_repository
        from pgtool.wal.repo_archive import RepoWal

        # Never create=True: a directory made here would be owned by whoever runs check (root, say),
        # where the server's archive-wal could then not write. A missing one is RepoAbsent.
        repo = open_repository(
            self.url, key_file=self.key_file, create=False, retry_timeout=min(self.timeout, 60.0)
        )
        self.wal = RepoWal(repo)
        return repo

    def reopen(self) -> bool:
        """Open the repository if it exists now (archive-wal creates it on its first segment)."""
        from pgtool.repo import RepoError

        try:
            self._open()
        except RepoError:
            return False
        return True

    def system_id(self) -> int | None:
        assert self.wal is not None
        return self.wal.system_id()

    def find(self, name: str) -> ArchivedFile | None:
        if self.wal is None:
            return None
        return self.wal.find(name)

    def verify(self, archived: ArchivedFile, system_id: int | None) -> str | None:
        """None when the archived segment reads back sound, else the problem in one line."""
        assert self.wal is not None  # found by `find`, which needs it
        return self.wal.read_back(archived, system_id)


class DirTarget:
    """An archive directory (archive-wal's `--archive-dir`)."""

    kind = "archive directory"

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.display = self.path

    def check(self) -> Status:
        """The directory exists, and this process can write, fsync and remove a file in it."""
        from pgtool import durable_write as durable

        if not os.path.isdir(self.path):
            return Status(
                PROBLEM,
                f"archive directory {self.path} does not exist",
                "create or mount it (archive-wal never creates it), writable by the server's user",
            )
        try:
            tmp, fd = durable.create_temp(self.path, PROBE_PREFIX)
            try:
                try:
                    os.write(fd, b"pgtool check probe\n")
                    os.fsync(fd)
                finally:
                    os.close(fd)
            finally:
                os.unlink(tmp)
        except OSError as exc:
            return Status(
                PROBLEM,
                f"cannot write a probe file in {self.path}: {exc.strerror or exc}",
                "make it writable by the server's user (and by the user running check)",
            )
        return Status(OK, f"{self.path}: exists, probe file written, fsynced and removed")

    def system_id(self) -> int | None:
        return read_system_id(self.path)

    def find(self, name: str) -> ArchivedFile | None:
        return find_archived(self.path, name)

    def verify(self, archived: ArchivedFile, system_id: int | None) -> str | None:
        from pgtool.wal.checksum import verify_archived

        del system_id  # verify_archived reads the directory's own record
        return verify_archived(self.path, archived)


Target = RepoTarget | DirTarget
