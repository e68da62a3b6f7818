"""Chains of incremental base backups: which backups one needs, and which a set of kept ones needs.

An incremental backup (`basebackup --incremental`) records its `parent` (the backup it was taken
against) and its `chain` (every backup it needs, the full one first). Restoring it needs every member:
`chain_of` resolves them from a catalogue and refuses a broken chain (a member missing, of another
system, or not the one recorded) before anything is written. Retention keeps whole chains:
`with_ancestors` is what a set of kept backups needs.
"""

from __future__ import annotations

from pgtool.errors import OperationError
from pgtool.physical.base_catalog import BaseBackupInfo


def chain_of(backups: list[BaseBackupInfo], backup: BaseBackupInfo) -> list[BaseBackupInfo]:
    """The backups restoring `backup` needs, the full backup first and `backup` last.

    OperationError when a member is missing from `backups` or does not match what `backup` recorded.
    """
    by_id = {b.id: b for b in backups}
    members = [backup]
    while members[-1].parent is not None:
        parent_id = members[-1].parent
        parent = by_id.get(parent_id)
        if parent is None or parent in members:
            recorded = " -> ".join([*backup.chain, backup.id])
            raise OperationError(
                f"base backup {backup.id} is incremental and needs {parent_id}, which is missing "
                f"(chain {recorded}): the chain is broken; nothing was restored",
                hint="restore an older complete chain (--backup), and take a new full backup",
            )
        members.append(parent)
    members.reverse()
    found = [m.id for m in members[:-1]]
    if backup.chain and found != backup.chain:
        raise OperationError(
            f"base backup {backup.id} records the chain {' -> '.join(backup.chain)}, "
            f"but its parents are {' -> '.join(found)}: the chain is broken; nothing was restored"
        )
    others = sorted({m.system_identifier for m in members} - {backup.system_identifier})
    if others:
        raise OperationError(
            f"the chain of base backup {backup.id} mixes database systems ({', '.join(others)})"
        )
    return members


def with_ancestors(backups: list[BaseBackupInfo], kept: set[str]) -> set[str]:
    """`kept` plus every backup a kept incremental needs (so no kept chain loses a member)."""
    by_id = {b.id: b for b in backups}
    needed = set(kept)
    for backup_id in kept:
        current = by_id.get(backup_id)
        while current is not None and current.parent is not None:
            needed.update(current.chain)
            needed.add(current.parent)
            current = by_id.get(current.parent)
    return needed
