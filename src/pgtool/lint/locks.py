"""Which table-level lock each statement takes, after PostgreSQL's "Explicit Locking" chapter.

Names are the documented modes (ACCESS SHARE ... ACCESS EXCLUSIVE). ALTER TABLE subcommands follow
the per-subcommand levels the ALTER TABLE page documents (AlterTableGetLockLevel in tablecmds.c):
most take ACCESS EXCLUSIVE; the few listed here take less.
"""

from __future__ import annotations

from typing import Any

ACCESS_SHARE = "ACCESS SHARE"
ROW_SHARE = "ROW SHARE"
ROW_EXCLUSIVE = "ROW EXCLUSIVE"
SHARE_UPDATE_EXCLUSIVE = "SHARE UPDATE EXCLUSIVE"
SHARE = "SHARE"
SHARE_ROW_EXCLUSIVE = "SHARE ROW EXCLUSIVE"
EXCLUSIVE = "EXCLUSIVE"
ACCESS_EXCLUSIVE = "ACCESS EXCLUSIVE"

# Locks beyond one table, as the rules and their findings name them.
DATABASE_EXCLUSIVE = f"{ACCESS_EXCLUSIVE} on the database"
DOMAIN_USERS = f"{SHARE} on every table using the domain"

# LockStmt.mode numbers (lockdefs.h), 0 is never produced by the grammar.
MODE_NAMES = {
    1: ACCESS_SHARE,
    2: ROW_SHARE,
    3: ROW_EXCLUSIVE,
    4: SHARE_UPDATE_EXCLUSIVE,
    5: SHARE,
    6: SHARE_ROW_EXCLUSIVE,
    7: EXCLUSIVE,
    8: ACCESS_EXCLUSIVE,
}
STRENGTH = {name: level for level, name in MODE_NAMES.items()}

BLOCKS = {
    ACCESS_SHARE: "only ACCESS EXCLUSIVE",
    ROW_SHARE: "EXCLUSIVE and ACCESS EXCLUSIVE",
    ROW_EXCLUSIVE: "SHARE and stronger locks (CREATE INDEX, ...)",
    SHARE_UPDATE_EXCLUSIVE: "other schema changes and VACUUM; reads and writes continue",
    SHARE: "writes (INSERT, UPDATE, DELETE); reads continue",
    SHARE_ROW_EXCLUSIVE: "writes and other schema changes; reads continue",
    EXCLUSIVE: "writes; only plain reads continue",
    ACCESS_EXCLUSIVE: "everything, reads included",
}

# ALTER TABLE subcommands that take less than ACCESS EXCLUSIVE.
_ALTER_TABLE_LEVELS = {
    "AT_ValidateConstraint": SHARE_UPDATE_EXCLUSIVE,
    "AT_SetStatistics": SHARE_UPDATE_EXCLUSIVE,
    "AT_ClusterOn": SHARE_UPDATE_EXCLUSIVE,
    "AT_DropCluster": SHARE_UPDATE_EXCLUSIVE,
    "AT_SetRelOptions": SHARE_UPDATE_EXCLUSIVE,
    "AT_ResetRelOptions": SHARE_UPDATE_EXCLUSIVE,
    "AT_SetOptions": SHARE_UPDATE_EXCLUSIVE,
    "AT_ResetOptions": SHARE_UPDATE_EXCLUSIVE,
    "AT_AttachPartition": SHARE_UPDATE_EXCLUSIVE,
    "AT_DetachPartitionFinalize": SHARE_UPDATE_EXCLUSIVE,
    "AT_EnableTrig": SHARE_ROW_EXCLUSIVE,
    "AT_EnableAlwaysTrig": SHARE_ROW_EXCLUSIVE,
    "AT_EnableReplicaTrig": SHARE_ROW_EXCLUSIVE,
    "AT_EnableTrigAll": SHARE_ROW_EXCLUSIVE,
    "AT_EnableTrigUser": SHARE_ROW_EXCLUSIVE,
    "AT_DisableTrig": SHARE_ROW_EXCLUSIVE,
    "AT_DisableTrigAll": SHARE_ROW_EXCLUSIVE,
    "AT_DisableTrigUser": SHARE_ROW_EXCLUSIVE,
    "AT_AddIndexConstraint": ACCESS_EXCLUSIVE,
}


def alter_table_cmd_lock(cmd: dict[str, Any]) -> str:
    """The lock one AlterTableCmd (JSON dict) takes on its table."""
    subtype = cmd.get("subtype", "")
    if subtype == "AT_AddConstraint":
        con = (cmd.get("def") or {}).get("Constraint", {})
        if con.get("contype") == "CONSTR_FOREIGN":
            return SHARE_ROW_EXCLUSIVE
        return ACCESS_EXCLUSIVE
    if subtype == "AT_DetachPartition":
        part = (cmd.get("def") or {}).get("PartitionCmd", {})
        return SHARE_UPDATE_EXCLUSIVE if part.get("concurrent") else ACCESS_EXCLUSIVE
    return _ALTER_TABLE_LEVELS.get(subtype, ACCESS_EXCLUSIVE)


def strongest(locks: list[str]) -> str:
    """The strongest of several lock names (ACCESS SHARE when the list is empty)."""
    return max(locks, key=lambda name: STRENGTH.get(name, 0), default=ACCESS_SHARE)
