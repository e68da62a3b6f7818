"""`basebackup --incremental`: the backup a new incremental is taken against, or why there is none.

PostgreSQL 17 added incremental base backups: `pg_basebackup --incremental=<earlier backup_manifest>`
copies only the blocks changed since that backup, which the server knows from its WAL summaries
(`summarize_wal = on`). pgtool takes it against the newest complete backup of the directory or
repository (full or incremental: the chain grows by one) and records `parent` and `chain` in the new
backup's metadata.

When the server cannot (older than 17, or summarize_wal off) the run stops with one line and exit 2,
unless `--incremental-fallback full` asks for a full backup instead (logged as a warning). With no
earlier backup at all, the first backup of a chain is full: there is nothing to be incremental on.
"""

from __future__ import annotations

from pathlib import Path

from pgtool.errors import UsageError
from pgtool.obs.logging import get_logger
from pgtool.physical.base_catalog import MANIFEST_FILE, BaseBackupInfo

FALLBACK_CHOICES = ("refuse", "full")


def summarize_wal(dsn: str) -> bool:
    """The server's summarize_wal setting, read over a replication connection like `server_facts`."""
    import psycopg

    from pgtool.pg.conn import connect, with_params

    conn = connect(with_params(dsn, replication="true") if dsn else "replication=true", pin="off")
    with conn:
        cur = psycopg.ClientCursor(conn)  # the walsender speaks only the simple query protocol
        cur.execute("SHOW summarize_wal")
        row = cur.fetchone()
    value = row[0] if row else b"off"
    return (value.decode() if isinstance(value, bytes) else str(value)) == "on"


def choose_parent(
    dsn: str, server_version: str, major: int, backups: list[BaseBackupInfo], *, fallback: str
) -> BaseBackupInfo | None:
    """The backup to take the incremental against (None: take a full backup).

    UsageError (exit 2, one line) when the server cannot take incremental backups and fallback is
    `refuse`.
    """
    if fallback not in FALLBACK_CHOICES:
        raise UsageError(f"--incremental-fallback must be one of {', '.join(FALLBACK_CHOICES)}")
    log = get_logger()
    reason = None
    if major < 17:
        reason = f"PostgreSQL {server_version} cannot take incremental backups (17 or newer needed)"
    elif not summarize_wal(dsn):
        reason = "summarize_wal is off on this server; incremental backups need summarize_wal = on"
    if reason is not None:
        if fallback == "full":
            log.warning("taking a full backup instead of an incremental", reason=reason)
            return None
        raise UsageError(f"{reason}: no backup taken (--incremental-fallback full takes a full one)")
    if not backups:
        log.info("no earlier backup to be incremental on: this first backup of the chain is full")
        return None
    return backups[-1]


def manifest_of(parent: BaseBackupInfo) -> Path:
    """The parent's manifest on local disk (a directory backup)."""
    assert parent.path is not None
    return parent.path / MANIFEST_FILE


def record_chain(info: BaseBackupInfo, parent: BaseBackupInfo | None) -> None:
    if parent is not None:
        info.parent = parent.id
        info.chain = [*parent.chain, parent.id]
