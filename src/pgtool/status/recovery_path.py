"""The timeline path recovery follows through the archive, and the base backups on it (for status).

The same rule as `recover` (`pgtool.wal.chain`): a backup whose timeline and start do not lie on the
archive's history cannot be recovered with it, and is reported and left out.
"""

from __future__ import annotations

from pgtool.physical.base_catalog import BaseBackupInfo
from pgtool.status.model import Section
from pgtool.wal.chain import ArchiveIndex, ChainError, Span
from pgtool.wal.listing import parse_lsn


def recovery_path(
    section: Section, index: ArchiveIndex, backups: list[BaseBackupInfo]
) -> tuple[list[Span] | None, list[BaseBackupInfo]]:
    """The path recovery follows (the same as recover's), and the backups on it.

    From the oldest backup whose timeline and start lie on the archive's history (newer ones then lie
    on it too); a backup off the history (an abandoned timeline) is reported and left out. Without
    backups, from the oldest timeline holding segments.
    """
    for i, backup in enumerate(backups):
        path, readable = _path_from(section, index, backup)
        if not readable:
            return None, backups
        if path is not None:
            return path, [backup, *_on_history(section, index, backups[i + 1 :])]
    try:
        return index.path(min(index.segment_timelines)), []
    except (OSError, ValueError) as exc:
        _unreadable(section, exc)
        return None, []


def _on_history(section: Section, index: ArchiveIndex, backups: list[BaseBackupInfo]) -> list[BaseBackupInfo]:
    """The backups recover accepts: a newer backup may still lie off the history (one of a former
    primary that kept running on its old timeline after a failover), and recover refuses those."""
    return [backup for backup in backups if _path_from(section, index, backup)[0] is not None]


def _path_from(
    section: Section, index: ArchiveIndex, backup: BaseBackupInfo
) -> tuple[list[Span] | None, bool]:
    """(recovery's path from `backup`, or None when it lies off the history; False when a timeline
    history file cannot be read): each problem reported in `section`."""
    try:
        return index.path(backup.timeline, parse_lsn(backup.start_lsn)), True
    except ChainError as exc:
        section.problem(
            f"base backup {backup.id} cannot be recovered with this archive: {exc}",
            "take a new base backup on the current timeline",
        )
        return None, True
    except (OSError, ValueError) as exc:
        _unreadable(section, exc)
        return None, False


def _unreadable(section: Section, exc: Exception) -> None:
    section.problem(f"a timeline history file cannot be read: {exc}", "restore it from pg_wal")
