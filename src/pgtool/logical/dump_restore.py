"""pg_restore for the drill: read a dump's table of contents, restore it, say when each table is loaded.

`read_toc` runs `pg_restore --list`. `restore` runs pg_restore into a scratch database. With
`--jobs` above 1 it adds `--verbose`: parallel pg_restore then reports "finished item <id> TABLE
DATA <table>" once that table's data is committed, and `on_table_loaded` hears of it while the
restore goes on with indexes and other tables. The ids are resolved through the TOC listing, whose
lines read `<id>; <tableoid> <oid> TABLE DATA <schema> <table> <owner>`, where pg_restore prints a
carriage return or newline in a name as a space (`toc_form`). A table whose line could name another
table too (spaces, `t\rx` beside `t x`) is simply never reported; the caller counts it afterwards.

Rows change only in TABLE DATA items: what the post-data section does (indexes, constraints,
triggers, policies) leaves a loaded table's row count as it is. pgtool's dumps never use
`--load-via-partition-root`, where one item's rows could land in another partition.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pgtool.errors import OperationError, PgtoolError
from pgtool.pg import binaries, command

_DBNAME = re.compile(r"^;\s+dbname:\s?(.*)$", re.M)
_ENTRIES = re.compile(r"^;\s+TOC Entries:\s*(\d+)\s*$", re.M)
_TABLE_DATA = re.compile(r"^(\d+); \d+ \d+ TABLE DATA (.+)$", re.M)
# Listed only with --create: "<id>; 1262 <oid> DATABASE - <name> <owner>".
_DATABASE = re.compile(r"^\d+; \d+ \d+ DATABASE - (.+)$", re.M)
_FINISHED = re.compile(r"^pg_restore: finished item (\d+) TABLE DATA ")
# What pg_restore --verbose says that is neither an error nor its context (which stay in messages).
_PROGRESS = re.compile(r"^pg_restore: (?!error:|warning:|detail:|hint:)")


class DumpReadError(OperationError):
    """pg_restore could not read the dump's table of contents."""


class RestoreError(OperationError):
    """pg_restore failed; the message is its first error line (see `command.run`)."""


@dataclass
class Toc:
    """What `pg_restore --list` says of a dump."""

    dbname: str | None
    entries: int
    # TABLE DATA dump id -> the rest of its listing line: "<schema> <table> <owner>".
    table_data: dict[int, str] = field(default_factory=dict)
    # The DATABASE entry's "<name> <owner>" (None in an archive without one).
    database_entry: str | None = None

    def table_ids(self, tables: Iterable[tuple[str, str]]) -> dict[int, tuple[str, str]]:
        """Dump id -> (schema, table) for each of `tables` whose TABLE DATA line names it unambiguously."""
        by_id: dict[int, tuple[str, str]] = {}
        forms = [(t, f"{toc_form(t[0])} {toc_form(t[1])} ") for t in tables]
        for dump_id, rest in self.table_data.items():
            matches = [t for t, form in forms if rest.startswith(form)]
            if len(matches) == 1:
                by_id[dump_id] = matches[0]
        return by_id

    def database_owner(self, database: str) -> str | None:
        """The owner the DATABASE entry names, if it names `database` (None when it cannot tell)."""
        head = toc_form(database) + " "
        if self.database_entry is None or not self.database_entry.startswith(head):
            return None
        return self.database_entry[len(head) :] or None


def toc_form(name: str) -> str:
    """How `pg_restore --list` shows `name` (as pgtool reads its output): CR and LF as spaces, bytes
    that are not UTF-8 (kept as surrogates, see `dump_sessions`) as U+FFFD."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text.replace("\r", " ").replace("\n", " ")


def read_toc(pg: binaries.PgBinaries, dump: Path) -> Toc:
    """The dump's TOC: the database it names, its entry count, its TABLE DATA items.

    The count is the header's "TOC Entries", which includes the ENCODING/SEARCHPATH entries every
    dump has: an empty database (often `postgres`) lists no objects, yet its dump is perfectly good.
    With --create the listing includes the DATABASE entry (its owner): nothing else changes.
    Raises DumpReadError.
    """
    try:
        out = command.run(
            [pg.path("pg_restore"), "--list", "--create", str(dump)],
            capture_stdout=True,
            log_stderr_level="debug",
        ).stdout
    except PgtoolError as exc:
        raise DumpReadError(f"TOC unreadable: {exc.message}") from None
    text = out or ""
    header = _ENTRIES.search(text)
    listed = sum(1 for line in text.splitlines() if line.strip() and not line.startswith(";"))
    name = _DBNAME.search(text)
    return Toc(
        dbname=name.group(1) if name else None,
        entries=int(header.group(1)) if header else listed,
        table_data={int(m.group(1)): m.group(2) for m in _TABLE_DATA.finditer(text)},
        database_entry=database.group(1) if (database := _DATABASE.search(text)) else None,
    )


def restore(
    dsn: str,
    dump: Path,
    dbname: str,
    pg: binaries.PgBinaries,
    jobs: int,
    *,
    on_data_loaded: Callable[[int], None] | None = None,
    keep_owners: bool = False,
) -> float:
    """Restore `dump` into the existing database `dbname`; the seconds it took. Raises RestoreError.

    keep_owners: restore ownership and grants as in the dump (the drill's own cluster, where the
    globals brought the roles back); otherwise `--no-owner --no-acl`.

    on_data_loaded: with jobs > 1, called (from a reader thread) with the dump id of each TABLE
    DATA item as soon as its data is committed; `Toc.table_ids` says which table that is.
    """
    on_progress = None
    if on_data_loaded is not None and jobs > 1:
        callback = on_data_loaded

        def on_progress(line: str) -> bool:
            finished = _FINISHED.match(line)
            if finished:
                callback(int(finished.group(1)))
            return _PROGRESS.match(line) is not None

    start = time.monotonic()
    with command.libpq_args(dsn, dbname=dbname, application_name="pgtool-verify-pg_restore") as (target, env):
        argv = [
            pg.path("pg_restore"),
            "--exit-on-error",
            # On a scratch server (--target-dsn), ownership and grants name roles it may not have; the
            # drill there proves the schema and data restore, which a restore in anger needs first.
            *([] if keep_owners else ["--no-owner", "--no-acl"]),
            "--no-password",
            *([f"--jobs={jobs}"] if jobs > 1 else []),
            *(["--verbose"] if on_progress is not None else []),
            f"--dbname={target}",
            str(dump),
        ]
        # The database is thrown away after the drill: its commits need not wait for the WAL flush
        # (a crash loses nothing that matters). PGOPTIONS is extended, not replaced; a DSN's own
        # `options` still wins, as libpq gives it precedence.
        options = " ".join(filter(None, [os.environ.get("PGOPTIONS"), "-c synchronous_commit=off"]))
        try:
            command.run(argv, env={**env, "PGOPTIONS": options}, what="pg_restore", on_progress=on_progress)
        except PgtoolError as exc:
            raise RestoreError(f"restore error: {exc.message}") from None
    return round(time.monotonic() - start, 3)
