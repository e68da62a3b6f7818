"""Moving a month's rows out of the DEFAULT partition into its new partition, safely.

Moving is DELETE + INSERT inside the transaction that creates and attaches the partition, with the DEFAULT
partition write-locked. Before it, `move_guard` refuses what would be unsafe: running a non-superuser
owner's code as a superuser, or a DELETE that foreign keys referencing the table would act on.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import psycopg
from psycopg import sql

from pgtool.errors import OperationError
from pgtool.schema.partition_catalog import Child, PartitionedTable, add_months, move_statement


def move_from_default(
    conn: psycopg.Connection[Any],
    table: PartitionedTable,
    default: Child,
    month: date,
    execute: Callable[[sql.SQL | sql.Composed], Any],
    dry_run: bool,
    batch_pages: int,
) -> int:
    """Move `month`'s rows out of the DEFAULT partition; returns how many moved (dry run: would move)."""
    default_ident = sql.Identifier(default.schema, default.name)
    key = sql.Identifier(table.key)
    count_stmt = sql.SQL("SELECT count(*) FROM {} WHERE {} >= {} AND {} < {}").format(
        default_ident, key, table.bound(month), key, table.bound(add_months(month, 1))
    )
    if not dry_run:
        # Block writes into the DEFAULT partition until commit (reads go on): nothing for this month can
        # arrive there between the move and the ATTACH, which would otherwise fail its validation scan.
        execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(default_ident))
    row = conn.execute(count_stmt).fetchone()
    expected = int(row[0]) if row else 0
    if expected == 0:
        return 0
    replica = move_guard(conn, table, default)
    pages_row = conn.execute(
        "SELECT pg_relation_size(%s) / current_setting('block_size')::int", (default.oid,)
    ).fetchone()
    pages = int(pages_row[0]) if pages_row else 0
    if dry_run:
        result_stmt = move_statement(table, default, month, 0, max(pages, 1))
        note = sql.SQL(
            "-- move {} rows out of the DEFAULT partition (write-locked), in batches of {} pages\n"
        )
        execute(note.format(sql.Literal(expected), sql.Literal(batch_pages)) + result_stmt)
        return expected
    moved = 0
    if replica:
        # The rows only change partition: foreign keys referencing the table must not see a DELETE
        # (ON DELETE CASCADE would delete the referencing rows: the new partition is not attached yet).
        conn.execute("SET LOCAL session_replication_role = replica")
    for first_page in range(0, pages + 1, batch_pages):
        cur = conn.execute(move_statement(table, default, month, first_page, first_page + batch_pages))
        moved += max(cur.rowcount, 0)
    if replica:
        conn.execute("SET LOCAL session_replication_role = origin")
    if moved != expected:
        # Cannot happen while we hold the lock; refuse to attach rather than guess.
        raise OperationError(f"moved {moved} rows from {default.name} but expected {expected}; rolled back")
    return moved


# Code the table's owner controls that moving rows would run with our privileges: triggers and rules on
# the parent or the DEFAULT partition, and functions or operators outside pg_catalog that its constraints,
# indexes or column defaults/generation expressions call (LIKE ... INCLUDING ALL copies them to the new
# partition, whose INSERT evaluates them).
_OWNER_CODE_SQL = """
WITH rels AS (SELECT pg_catalog.unnest(%(rels)s::pg_catalog.oid[]) AS oid),
user_code AS (
    SELECT 'pg_catalog.pg_proc'::pg_catalog.regclass AS classid, p.oid FROM pg_catalog.pg_proc p
    WHERE p.pronamespace <> 'pg_catalog'::pg_catalog.regnamespace
    UNION ALL
    SELECT 'pg_catalog.pg_operator'::pg_catalog.regclass, o.oid FROM pg_catalog.pg_operator o
    WHERE o.oprnamespace <> 'pg_catalog'::pg_catalog.regnamespace
),
expressions AS (
    SELECT 'pg_catalog.pg_constraint'::pg_catalog.regclass AS classid, c.oid
    FROM pg_catalog.pg_constraint c WHERE c.conrelid IN (SELECT oid FROM rels)
    UNION ALL
    SELECT 'pg_catalog.pg_class'::pg_catalog.regclass, i.indexrelid
    FROM pg_catalog.pg_index i WHERE i.indrelid IN (SELECT oid FROM rels)
    UNION ALL
    SELECT 'pg_catalog.pg_attrdef'::pg_catalog.regclass, a.oid
    FROM pg_catalog.pg_attrdef a WHERE a.adrelid IN (SELECT oid FROM rels)
)
SELECT 'trigger ' || t.tgname FROM pg_catalog.pg_trigger t
WHERE t.tgrelid IN (SELECT oid FROM rels) AND NOT t.tgisinternal AND t.tgenabled <> 'D'
UNION ALL
SELECT 'rule ' || r.rulename FROM pg_catalog.pg_rewrite r WHERE r.ev_class IN (SELECT oid FROM rels)
UNION ALL
SELECT 'function or operator ' || pg_catalog.pg_describe_object(d.refclassid, d.refobjid, 0)
FROM pg_catalog.pg_depend d
JOIN user_code u ON u.classid = d.refclassid AND u.oid = d.refobjid
JOIN expressions e ON e.classid = d.classid AND e.oid = d.objid
LIMIT 3
"""


_REFERENCING_FKS_SQL = """
SELECT c.conname || ' on ' || c.conrelid::pg_catalog.regclass::pg_catalog.text
FROM pg_catalog.pg_constraint c
WHERE c.contype = 'f' AND c.confrelid = ANY(%(rels)s::pg_catalog.oid[]) AND c.conparentid = 0
LIMIT 3
"""


def _is_superuser(conn: psycopg.Connection[Any], role: str | None = None) -> bool:
    if role is None:
        row = conn.execute(
            "SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER"
        ).fetchone()
    else:
        row = conn.execute(
            "SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = %s", (role,)
        ).fetchone()
    return bool(row and row[0])


def move_guard(conn: psycopg.Connection[Any], table: PartitionedTable, default: Child) -> bool:
    """Check that the rows of the DEFAULT partition can move safely; True when the move must run with
    session_replication_role = replica (foreign keys reference the table, and we are a superuser).

    Moving is DELETE + INSERT. It runs the DEFAULT partition's triggers and the table's constraint, index
    and default expressions as the connected role: a superuser would run a non-superuser owner's functions
    with its privileges (SET ROLE would not contain them: a function can RESET ROLE), so that is refused.
    The DELETE would also fire the ON DELETE actions of foreign keys referencing the table, while the
    rows' new partition is not attached yet: CASCADE would delete the referencing rows. A superuser moves
    them in replica mode (referential triggers off, the rows are back before commit); anyone else is
    refused. OperationError says what to do.
    """
    superuser = _is_superuser(conn)
    rels = {"rels": [table.oid, default.oid]}
    if superuser and not _is_superuser(conn, table.owner):
        found = [r[0] for r in conn.execute(_OWNER_CODE_SQL, rels)]
        if found:
            raise OperationError(
                f"rows of {table.display} in its DEFAULT partition would move through code its owner "
                f"{table.owner} controls ({', '.join(found)}), run as a superuser",
                hint=f"run pgtool partitions as {table.owner} (the table's owner), or move the rows by hand",
            )
    fks = [r[0] for r in conn.execute(_REFERENCING_FKS_SQL, rels)]
    if fks and not superuser:
        raise OperationError(
            f"rows of {table.display} in its DEFAULT partition cannot move: foreign keys reference it "
            f"({', '.join(fks)}) and moving a row deletes it first",
            hint="run pgtool partitions as a superuser (it moves them with referential triggers off)",
        )
    return bool(fks)
