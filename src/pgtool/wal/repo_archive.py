"""The WAL archive in a backup repository (`--repo`): archive-wal on a local directory, S3 or Azure, and
the listing that the one archive model (`pgtool.wal.chain`) reads; restore-wal is in
`pgtool.wal.repo_restoring`.

The checks are the directory archive's (`pgtool.wal.archiving`, `pgtool.wal.restoring`), applied to
objects `wal/<TLI>/<name>` (`pgtool.repo.layout`):
  - archive-wal: the segment's page header against its name and size, the repository's system
    identifier (object `wal/system-identifier`), the split-brain fork check against the history of
    timeline T+1, then ONE conditional create (If-None-Match): an identical object already there is
    success, a different one exit 1 with the object untouched. No check-then-write anywhere.
  - restore-wal: the object's own checksum or authentication (`pgtool.repo.objformat`, which also
    binds the object's name), then the page header against the name and the repository's system
    identifier; DEST appears only after all of it (temporary, fsync, rename). Absent -> 1; an
    unreachable store, a timeout, a damaged object, a missing or wrong key -> 126.

Not stdlib: zstandard is imported with this module, obstore only for an S3 or Azure repository and
PyNaCl only for an encrypted one; only `--repo` reaches it, and the directory archive and the zipapp
bundle never import it. What archiving into a local repository does not use is imported where used
(the uploader, the prefetch spool, restore-wal's helpers): that path runs once per segment. A segment
is read into memory whole for the conditional create (16 MiB by default; at most 1 GiB, PostgreSQL's
largest segment size).
"""

from __future__ import annotations

import os

from pgtool import durable_write as durable
from pgtool.repo import layout as repo_layout
from pgtool.repo.errors import IntegrityError, ObjectAbsent, ObjectDiffers, RepoError, RepoUsageError
from pgtool.repo.repository import open_repository
from pgtool.wal.archive import ArchivedFile, CorruptArchiveError
from pgtool.wal.archiving import check_segment_fd, refuse_past_fork
from pgtool.wal.checksum import verified_chunks
from pgtool.wal.errors import (
    ARCHIVE_FAILED,
    ARCHIVE_USAGE,
    WalCommandError,
)
from pgtool.wal.mapped import mapped
from pgtool.wal.names import WalName, history_name, parse_wal_name
from pgtool.wal.results import ALREADY_ARCHIVED, ARCHIVED, ArchiveResult
from pgtool.wal.timelines import parse_history

# Not typing.TYPE_CHECKING (~7 ms on the per-segment path). Mypy reads any constant of this name as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

    from pgtool.repo.repository import Repository

SYSTEM_ID_OBJECT = f"{repo_layout.WAL}/system-identifier"


class RepoWal:
    """The WAL part of one repository, as `ArchivedFile`s the archive model reads.

    An ArchivedFile from here has `path` = its object name and `source` = this object, so
    `pgtool.wal.archive.iter_content` streams it verified from the store.
    """

    def __init__(self, repo: Repository) -> None:
        self.repo = repo

    @property
    def display(self) -> str:
        return self.repo.url.display()

    def where(self, name: str) -> str:
        return self.repo.where(name)

    def chunks(self, archived: ArchivedFile) -> Iterator[bytes]:
        """The object's content, decompressed and decrypted; IntegrityError at the end if damaged."""
        try:
            yield from self.repo.open(archived.path)
        except IntegrityError as exc:
            raise CorruptArchiveError(str(exc)) from exc

    def read_back(self, archived: ArchivedFile, system_id: int | None) -> str | None:
        """None when the object reads back sound, else the problem in one line: the object format's own
        checksum (or authentication), checked by iter_content at the end of the stream, then the page
        header checks restore-wal makes (`system_id` None: not checked)."""
        from pgtool.wal.archive import iter_content

        try:
            for _chunk in verified_chunks(
                iter_content(archived), archived.wal, None, system_id, self.where(archived.path)
            ):
                pass
        except (CorruptArchiveError, RepoError) as exc:
            return str(exc)
        return None

    def list_archive(self) -> list[ArchivedFile]:
        """Every WAL object, sorted like `pgtool.wal.archive.list_archive` (RepoError on failure)."""
        found = []
        for info in self.repo.list(f"{repo_layout.WAL}/"):
            parts = info.name.split("/")
            if len(parts) != 3:
                continue  # wal/system-identifier, or anything not pgtool's
            try:
                wal = parse_wal_name(parts[2])
                if repo_layout.wal_name(parts[2]) != info.name:
                    continue  # filed under another timeline's folder: not where readers look
            except (ValueError, RepoUsageError):
                continue
            found.append(ArchivedFile(parts[2], wal, info.name, None, info.size, source=self))
        return sorted(found, key=lambda f: (f.wal, f.name))

    def find(self, name: str) -> ArchivedFile | None:
        wal = parse_wal_name(name)
        obj = repo_layout.wal_name(name)
        info = self.repo.store.head(obj)
        return None if info is None else ArchivedFile(name, wal, obj, None, info.size, source=self)

    def system_id(self) -> int | None:
        try:
            text = self.repo.read_bytes(SYSTEM_ID_OBJECT).decode("ascii", "replace").strip()
        except ObjectAbsent:
            return None
        if not text.isdigit():
            raise CorruptArchiveError(f"{self.where(SYSTEM_ID_OBJECT)} does not hold a system identifier")
        return int(text)

    def fork_point(self, timeline: int) -> tuple[int, int] | None:
        """Where timeline+1 forked from `timeline`, from its history object (see timelines.fork_point)."""
        child = timeline + 1
        try:
            text = self.repo.read_bytes(repo_layout.wal_name(history_name(child)))
        except ObjectAbsent:
            return None
        for entry in parse_history(text.decode("utf-8", "replace")):
            if entry.parent == timeline:
                return child, entry.switchpoint
        return None


def open_wal(url: str, key_file: str | None, *, create: bool) -> RepoWal:
    return RepoWal(open_repository(url, key_file=key_file, create=create))


def _names(wal_name: str, usage_code: int) -> tuple[WalName, str]:
    """The parsed WAL name and its object name; a bad name is bad usage (`usage_code`)."""
    try:
        return parse_wal_name(wal_name), repo_layout.wal_name(wal_name)
    except (ValueError, RepoUsageError) as exc:
        raise WalCommandError(str(exc), usage_code) from exc


def archive_wal_repo(
    wal_path: str,
    wal_name: str,
    url: str,
    *,
    key_file: str | None = None,
    compress: bool = True,
    allow_system_id_change: bool = False,
    ahead: int = 0,
) -> ArchiveResult:
    """Archive the WAL file at wal_path as `wal/<TLI>/<wal_name>` in the repository at `url`.

    ahead: when more segments are ready, start the uploader that uploads them this many at a time
    (`pgtool.wal.repo_ahead`); their own calls then only confirm them (`pgtool.wal.ahead_marks`,
    before this module is even imported). Raises WalCommandError: exit 2 for bad usage (a bad name or
    URL), 1 for anything else, with the repository holding either nothing new or, for the name, what it
    held before.
    """
    wal, obj = _names(wal_name, ARCHIVE_USAGE)
    try:
        with open(wal_path, "rb") as f:
            sysid = None
            seg_size = size = 0
            if wal.has_page_header:
                size = os.fstat(f.fileno()).st_size
                sysid, seg_size = check_segment_fd(f.fileno(), size, wal_path, wal_name, wal)
            # mapped: unmapped when the last reference goes (this function's return)
            data = mapped(f.fileno()) if sysid is not None and size > 0 else f.read()
    except OSError as exc:
        raise WalCommandError(f"cannot read {wal_path}: {exc.strerror or exc}", ARCHIVE_FAILED) from exc
    claim = None
    started = False
    try:
        archive = _open_for_archiving(wal_path, url, key_file)
        if sysid is not None:
            _check_system_id(archive, sysid, wal_path, allow_system_id_change)
            fork = archive.fork_point(wal.timeline)
            refuse_past_fork(wal, seg_size, fork, archive.display)
            if ahead:
                from pgtool.wal import ahead_marks, repo_ahead

                pg_wal = ahead_marks.pg_wal_of(wal_path)
                ahead_marks.forget_stale(pg_wal)
                # Held while this call uploads its segment, so the uploader does not upload it too
                # (None: the uploader is on it; the conditional create makes a second upload safe).
                claim = ahead_marks.try_claim(pg_wal, wal_name)
                started = repo_ahead.ensure_uploader(
                    wal_path,
                    wal_name,
                    url,
                    key_file,
                    sysid=sysid,
                    seg_size=seg_size,
                    timeline=wal.timeline,
                    ahead=ahead,
                    compress=compress,
                )
        created = archive.repo.put_if_absent(obj, data, compress=compress)
    except ObjectDiffers as exc:
        raise WalCommandError(
            f"{exc} (archiving {wal_path}); the archived object was left untouched",
            ARCHIVE_FAILED,
            hint="find out which copy is right before removing either",
        ) from exc
    except RepoUsageError as exc:
        raise WalCommandError(exc.message, ARCHIVE_USAGE, hint=exc.hint) from exc
    except (RepoError, CorruptArchiveError) as exc:
        raise WalCommandError(
            f"archiving {wal_path} failed: {exc}",
            ARCHIVE_FAILED,
            hint=getattr(exc, "hint", None) or "nothing was archived under that name; PostgreSQL retries",
        ) from exc
    except BaseException:
        if claim is not None:
            from pgtool.wal import ahead_marks

            ahead_marks.release(claim)
        raise
    if claim is not None:
        # The claim is kept until this process exits (archive-wal's only caller is fastcli): PostgreSQL
        # marks the segment done right after, so the uploader never sees it both ready and unclaimed.
        from pgtool.wal import ahead_marks

        ahead_marks.hold(claim)
    result = ArchiveResult(
        ARCHIVED if created else ALREADY_ARCHIVED, archive.where(obj), len(data), len(data), sysid, []
    )
    result.uploader_started = started
    return result


SEEN = ".pgtool-repo"  # beside the segment (pg_wal): the repository this cluster archives into


def _open_for_archiving(wal_path: str, url: str, key_file: str | None) -> RepoWal:
    """The repository, created on first use, but never again once this pg_wal archived into it: a
    repository that then reads as absent (an unmounted volume, a deleted prefix) is an error, not a
    fresh repository that silently lacks every segment before this one."""
    from pgtool.repo.errors import RepoAbsent
    from pgtool.wal.ahead_marks import identity

    seen = os.path.join(os.path.dirname(os.path.abspath(wal_path)), SEEN)
    here = identity(url, None)
    try:
        with open(seen, encoding="utf-8") as f:
            known = f.read() == here
    except OSError:
        known = False
    try:
        archive = open_wal(url, key_file, create=not known)
    except RepoAbsent as exc:
        raise WalCommandError(
            f"the repository {url}, which this cluster has archived into, is gone (unmounted or "
            "deleted?): not starting a new one that would lack the WAL before this segment",
            ARCHIVE_FAILED,
            hint=f"mount or restore it; to start a new repository on purpose, remove {seen}",
        ) from exc
    if not known:
        try:  # best effort: without it, only this guard is lost
            tmp, fd = durable.create_temp(os.path.dirname(seen), SEEN)
            try:
                os.write(fd, here.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, seen)
        except OSError:
            pass
    return archive


def _check_system_id(archive: RepoWal, sysid: int, wal_path: str, allow_change: bool) -> None:
    recorded = archive.system_id()
    if recorded == sysid:
        return
    if recorded is not None and not allow_change:
        raise WalCommandError(
            f"{wal_path} belongs to database system {sysid}, but repository {archive.display} holds "
            f"WAL of system {recorded} (recorded in {SYSTEM_ID_OBJECT})",
            ARCHIVE_FAILED,
            hint="two clusters must not share one repository: use another --repo (or prefix), or pass "
            "--allow-system-id-change if this cluster replaces the old one",
        )
    data = f"{sysid}\n".encode()
    if recorded is None:
        try:
            archive.repo.put_if_absent(SYSTEM_ID_OBJECT, data, compress=False)
            return
        except ObjectDiffers:
            pass  # another cluster's first segment won the race: compare again
        if archive.system_id() != sysid:
            raise WalCommandError(
                f"{wal_path} belongs to database system {sysid}, but another system's WAL was "
                f"recorded in {archive.where(SYSTEM_ID_OBJECT)} at the same time",
                ARCHIVE_FAILED,
            )
        return
    # --allow-system-id-change: the new cluster replaces the old one; its identifier becomes the record.
    archive.repo.delete(SYSTEM_ID_OBJECT)
    archive.repo.put_if_absent(SYSTEM_ID_OBJECT, data, compress=False)
