"""Where recovery reads archived WAL: an archive directory or a backup repository (`--repo`).

`recover`, the base drill, the archive's end and the verified recovery point all ask one of these for
the same four things, so both kinds of archive give the same answers through the one archive model
(`pgtool.wal.chain.ArchiveIndex`):
  - the index of WAL files (names, timelines, history files);
  - the system identifier the archive records;
  - a verified local copy of one WAL file (for pg_waldump: it reads files, not streams);
  - the restore_command the recovered server runs.

A repository copy is verified exactly as `restore-wal --repo` verifies it (the object's checksum or
authentication, then the page header against the name and the system identifier), but through the
repository opened once: a passphrase key costs an Argon2id derivation per open.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from pgtool.errors import OperationError, UsageError
from pgtool.wal.chain import ArchiveIndex
from pgtool.wal.errors import WalCommandError

if TYPE_CHECKING:
    from pgtool.repo import Repository
    from pgtool.wal.archive import ArchivedFile
    from pgtool.wal.repo_archive import RepoWal


class DirArchive:
    """An archive directory written by `pgtool archive-wal --archive-dir`."""

    def __init__(self, archive_dir: Path) -> None:
        self.archive_dir = Path(archive_dir).absolute()
        self.display = str(self.archive_dir)

    def check_exists(self) -> None:
        if not self.archive_dir.is_dir():
            raise UsageError(f"WAL archive {self.archive_dir} does not exist")

    def check_not_empty(self) -> None:
        """An archive with no WAL, or one that cannot be listed, is a mistake (unmounted?)."""
        from pgtool.wal.listing import list_archive

        try:
            kinds = {i.kind for i in list_archive(self.archive_dir)}
        except OSError as exc:
            raise OperationError(f"cannot read WAL archive {self.display}: {exc.strerror or exc}") from None
        _need_segment(kinds, self.display)

    def index(self, segment_size: int) -> ArchiveIndex:
        try:
            return ArchiveIndex.load(str(self.archive_dir), segment_size)
        except OSError as exc:
            raise OperationError(f"cannot read WAL archive {self.display}: {exc.strerror or exc}") from None

    def system_id(self) -> int | None:
        from pgtool.wal.archive import read_system_id

        try:
            return read_system_id(str(self.archive_dir))
        except ValueError:
            return None  # an unreadable marker: segment names and headers are still checked

    def mtime(self, archived: ArchivedFile) -> float | None:
        return Path(archived.path).stat().st_mtime

    def has(self, name: str) -> bool:
        from pgtool.wal.listing import stored_copies

        return bool(stored_copies(self.archive_dir, name))

    def fetch(self, name: str, dest: Path, *, allow_unverified: bool = False) -> None:
        """A verified copy of WAL file `name` at `dest` (OperationError when absent or damaged)."""
        from pgtool.wal.restoring import restore_wal

        try:
            restore_wal(name, str(dest), str(self.archive_dir), allow_unverified=allow_unverified)
        except WalCommandError as exc:
            raise OperationError(exc.one_line()) from None

    def restore_command(self, *, allow_unverified: bool = False) -> str:
        from pgtool.recovery.recovery_config import restore_command

        return restore_command(self.archive_dir, allow_unverified=allow_unverified)


class RepoArchive:
    """The WAL of a backup repository (`wal/<TLI>/<name>` objects).

    key_file: the key file path the recovered server's restore-wal is given (None: it reads
    $PGTOOL_REPO_KEY_FILE from its own environment, like the credentials).
    """

    def __init__(self, repo: Repository, key_file: str | None = None) -> None:
        from pgtool.wal.repo_archive import RepoWal

        self.wal: RepoWal = RepoWal(repo)
        self.repo = repo
        self.key_file = str(Path(key_file).absolute()) if key_file else None
        self.display = f"repository {repo.url.display()}"
        self._system_id: tuple[int | None] | None = None

    def check_exists(self) -> None:
        """Opening the repository already read its record: it exists."""

    def check_not_empty(self) -> None:
        _need_segment({i.wal.kind for i in self.wal.list_archive()}, self.display)

    def index(self, segment_size: int) -> ArchiveIndex:
        return ArchiveIndex(self.display, segment_size, self.wal.list_archive())

    def system_id(self) -> int | None:
        from pgtool.wal.archive import CorruptArchiveError

        if self._system_id is None:
            try:
                self._system_id = (self.wal.system_id(),)
            except CorruptArchiveError as exc:
                raise OperationError(str(exc)) from None
        return self._system_id[0]

    def mtime(self, archived: ArchivedFile) -> float | None:
        return None  # listings carry names and sizes only

    def has(self, name: str) -> bool:
        from pgtool.repo import wal_name

        return self.repo.exists(wal_name(name))

    def fetch(self, name: str, dest: Path, *, allow_unverified: bool = False) -> None:
        """A verified copy of WAL object `name` at `dest`; it appears only after verification."""
        from pgtool.repo import ObjectAbsent, RepoError, wal_name
        from pgtool.wal.archive import CorruptArchiveError
        from pgtool.wal.checksum import verified_chunks
        from pgtool.wal.names import parse_wal_name

        wal, obj = parse_wal_name(name), wal_name(name)
        where = self.repo.where(obj)
        tmp = dest.with_name(dest.name + ".part")
        try:
            system_id = self.system_id() if wal.has_page_header else None
            with open(tmp, "wb") as f:
                for chunk in verified_chunks(self.repo.open(obj), wal, None, system_id, where):
                    f.write(chunk)
            os.replace(tmp, dest)
        except ObjectAbsent:
            raise OperationError(f"{name} is not in {self.display}") from None
        except (RepoError, CorruptArchiveError) as exc:
            raise OperationError(str(exc)) from None  # it names the object and the store
        finally:
            tmp.unlink(missing_ok=True)

    def restore_command(self, *, allow_unverified: bool = False) -> str:
        return repo_restore_command(self.repo.url.display(), self.key_file)


def _need_segment(kinds: set[str], display: str) -> None:
    if "segment" not in kinds:
        raise OperationError(
            f"WAL archive {display} holds no WAL segment",
            hint="is the archive mounted, and is it the one archive_command writes to?",
        )


def repo_restore_command(url: str, key_file: str | None, executable: str | None = None) -> str:
    """`<pgtool> restore-wal %f %p --repo URL [--repo-key-file F]`, shell-quoted, `%` doubled.

    Never a credential: the server needs the same AWS_* / AZURE_STORAGE_* environment (and
    PGTOOL_REPO_KEY_FILE when no key file is named here). The server user runs this installation's
    pgtool, or the WAL bundle with the repository packages copied beside it for its interpreter.
    """
    if executable is None:
        from pgtool import wal_bundle

        if not wal_bundle.server_runs_repository():
            raise OperationError(
                "the database server's user can run neither this pgtool nor a python3 of its ABI "
                "(for the WAL bundle with the repository packages), and restore-wal --repo needs one",
                hint="install pgtool where the server user can run it (a venv every user can read)",
            )
        prefix = wal_bundle.server_command().replace("%", "%%")
    else:
        prefix = shlex.quote(executable).replace("%", "%%")
    parts = ["restore-wal", "%f", "%p", "--repo", url]
    if key_file:
        parts += ["--repo-key-file", str(Path(key_file).absolute())]
    quoted = [p if p in ("%f", "%p") else shlex.quote(p).replace("%", "%%") for p in parts]
    return " ".join([prefix, *quoted])


WalArchive = DirArchive | RepoArchive


def as_archive(archive: Path | str | WalArchive) -> WalArchive:
    """An archive directory path becomes a DirArchive; an archive object is used as is."""
    if isinstance(archive, DirArchive | RepoArchive):
        return archive
    return DirArchive(Path(archive))
