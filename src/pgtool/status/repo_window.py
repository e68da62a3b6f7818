"""Base backups and the recoverable window read from a backup repository (`status --repo`).

The same checks as for directories (`wal_window`): the backups are `repo_catalog`'s (each metadata
object read and verified), the WAL is the repository's WAL objects fed to the one archive model
(`ArchiveIndex` over `RepoWal.list_archive()`), and the window is claimed only after every segment it
relies on was read in full: each object's own checksum (or authentication, when encrypted) through
`iter_content`, then its page header against its name, size and the repository's system identifier.
A damaged or vanished object counts as a gap.

When an object was archived comes from the store's last-modified time of the newest segment.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Unpack

from pgtool.status.model import Section, Thresholds
from pgtool.status.wal_window import ArchiveReader, WindowOptions, check_archive, new_section, report_backups
from pgtool.wal.archive import ArchivedFile
from pgtool.wal.chain import ArchiveIndex
from pgtool.wal.listing import DEFAULT_SEGMENT_SIZE

if TYPE_CHECKING:
    from pgtool.wal.repo_archive import RepoWal


class RepoReader(ArchiveReader):
    checks = (
        "read in full: object checksum or authentication, page header (address, timeline, system identifier)"
    )
    short = "object checksums and page headers"
    option = "--repo"

    def __init__(self, wal: RepoWal, system_id: int | None) -> None:
        super().__init__(wal.display)
        self.wal = wal
        self.system_id = system_id

    def archived_at(self, archived: ArchivedFile) -> float:
        """The object's last-modified time in the store (when archive-wal created it)."""
        import obstore

        from pgtool.repo import RepoError

        try:
            meta = obstore.head(self.wal.repo.store.backend, archived.path)  # type: ignore[arg-type]
        except Exception as exc:  # any store failure; its text may quote credentials, so only its kind
            raise RepoError(
                f"cannot read when {self.wal.where(archived.path)} was stored ({type(exc).__name__})"
            ) from None
        modified = meta["last_modified"]
        return modified.timestamp() if isinstance(modified, datetime) else time.time()

    def verify(self, archived: ArchivedFile) -> str | None:
        return self.wal.read_back(archived, self.system_id if archived.wal.has_page_header else None)


def repo_base_backups_section(
    repo_url: str, key_file: str | None, thresholds: Thresholds, **options: Unpack[WindowOptions]
) -> Section:
    """Newest base backup, WAL continuity and the recoverable window, all from the repository."""
    from pgtool.physical import repo_catalog
    from pgtool.repo import RepoError, open_repository
    from pgtool.wal.archive import CorruptArchiveError
    from pgtool.wal.repo_archive import RepoWal

    section, now = new_section(options)
    server_segment_size, last_archived_wal = (
        options.get("server_segment_size"),
        options.get("last_archived_wal"),
    )
    try:
        repo = open_repository(repo_url, key_file=key_file, create=False)
        where = repo.url.display()
        section.data["repo"] = where
        backups = report_backups(
            section, repo_catalog.list_base_backups(repo), where, "--repo URL", thresholds, now
        )
        segment_size = (backups[-1].wal_segment_size if backups else None) or server_segment_size
        wal = RepoWal(repo)
        index = ArchiveIndex(where, segment_size or DEFAULT_SEGMENT_SIZE, wal.list_archive())
        reader = RepoReader(wal, wal.system_id())
        check_archive(section, reader, index, backups, last_archived_wal, now)
    except (RepoError, CorruptArchiveError) as exc:
        section.problem(
            f"cannot read the repository: {exc}",
            getattr(exc, "hint", None) or "check --repo, the store's credentials and --repo-key-file",
        )
    return section


def newest_start(section: Section) -> tuple[str, int] | None:
    """(id, start LSN) of the newest base backup the section listed, for the RTO prediction."""
    from pgtool.wal.names import parse_lsn

    backups = section.data.get("backups") or []
    if not backups:
        return None
    return str(backups[-1]["id"]), parse_lsn(str(backups[-1]["start_lsn"]))
