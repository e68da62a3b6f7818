"""The safety checks before a base backup is taken, against a backup directory or a repository.

Retention and WAL pruning key on the newest backup, so a backup of the wrong server would delete what
recovery needs:
- `check_same_system`: the backups and the WAL archive must belong to this server's database system;
- `check_not_behind`: the server must not be behind a failover (an old primary still running on the
  timeline a promoted standby forked from).

Both take what was read (backup records, the archive's recorded system identifier, the archive's
files as `ArchivedFile`s), so the directory (`basebackup`) and the repository (`repo_basebackup`)
apply the same rules.
"""

from __future__ import annotations

from pgtool.errors import OperationError, UsageError
from pgtool.physical.base_catalog import BaseBackupInfo
from pgtool.wal.archive import ArchivedFile


def check_same_system(
    backups: list[BaseBackupInfo],
    backups_where: str,
    archived: int | None,
    archive_where: str | None,
    sysid: str,
) -> None:
    """Refuse to mix clusters: retention and pruning would delete another cluster's backups or WAL.

    archived: the system identifier recorded for the WAL archive (None: none recorded yet).
    """
    others = sorted({b.system_identifier for b in backups} - {sysid})
    if others:
        raise UsageError(
            f"{backups_where} holds base backups of another database system ({', '.join(others)}; "
            f"this server is {sysid})",
            hint="use one --dest directory (or --repo) per cluster",
        )
    if archived is not None and str(archived) != sysid:
        raise UsageError(
            f"WAL archive {archive_where} belongs to database system {archived}, this server is {sysid}",
            hint="pass the archive this server's archive_command writes to",
        )


def check_not_behind(
    backups: list[BaseBackupInfo],
    backups_where: str,
    archive: list[ArchivedFile] | None,
    archive_where: str | None,
    timeline: int,
    position: int,
) -> None:
    """Refuse a server that is behind a failover: an older timeline than the backups' newest, or a
    timeline the archive's history says was forked from at a point this server has passed.

    After a failover the promoted standby writes `T+1.history` (`T  switchpoint`); an old primary that
    comes back still runs on T, past the switch point. A base backup of it would become the "newest",
    and retention and WAL pruning keyed on it would delete the new timeline's backups and WAL.
    """
    from pgtool.wal.archive import CorruptArchiveError, iter_content
    from pgtool.wal.names import HISTORY
    from pgtool.wal.timelines import parse_history

    newer = [b for b in backups if b.timeline > timeline]
    found = None
    if newer:
        found = f"{backups_where} holds base backup {newer[-1].id} on timeline {newer[-1].timeline}"
    for item in archive or []:
        if found or item.wal.kind != HISTORY or item.wal.timeline <= timeline:
            continue
        try:
            entries = parse_history(b"".join(iter_content(item)).decode("utf-8", "replace"))
        except (OSError, ValueError, CorruptArchiveError) as exc:
            raise OperationError(f"cannot read timeline history {item.name}: {exc}") from None
        if any(e.parent == timeline and e.switchpoint <= position for e in entries):
            found = (
                f"WAL archive {archive_where} holds timeline {item.wal.timeline}, "
                f"forked from it ({item.name})"
            )
    if found:
        raise OperationError(
            f"this server is on timeline {timeline}, but {found}: it looks like a former primary "
            "after a failover (split brain); no backup taken, nothing pruned",
            hint="run basebackup against the current primary, and rebuild this server as its standby",
        )
