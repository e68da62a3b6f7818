"""The `application_name` of pgtool's sessions, in one place.

Operators (and the deployment's alerts) tell pgtool's sessions apart by these names. A backup and a restore
drill each hold one snapshot or transaction for the whole run by design, so the long-running-transaction
alert must not count them: `exporter/queries.yaml` (`pg_oldest_transaction`) carries
`LONG_TRANSACTION_EXCLUSION` verbatim, and `tests/deploy/test_deploy_exporter.py` checks that, and that a
real `pgtool backup`'s sessions all fall under `LONG_TRANSACTION_PREFIXES` while they hold their snapshot.
A session name that starts with one of those prefixes is excluded, so a new helper session
(`pgtool-backup-<tool>`) needs no change here.

Stdlib only, no imports: cheap for any module that names a session.
"""

from __future__ import annotations

DEFAULT = "pgtool"
BACKUP = "pgtool-backup"  # exports the dump's snapshot and counts rows in it
BACKUP_PG_DUMP = "pgtool-backup-pg_dump"
VERIFY = "pgtool-verify"  # the restore drill's sessions
VERIFY_PG_RESTORE = "pgtool-verify-pg_restore"
REPORTING = "pgtool-reporting"
STATUS = "pgtool-status"
TOP = "pgtool-top"
BENCH = "pgtool-bench"

# Sessions whose long transaction is by design: every name starting with one of these.
LONG_TRANSACTION_PREFIXES = (BACKUP, VERIFY)


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern matching names that start with `prefix` (its own % and _ escaped)."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("'", "''") + "%"


# SQL condition over pg_stat_activity: true for sessions that are not one of the above.
LONG_TRANSACTION_EXCLUSION = " AND ".join(
    f"application_name NOT LIKE '{_like_prefix(p)}'" for p in LONG_TRANSACTION_PREFIXES
)
