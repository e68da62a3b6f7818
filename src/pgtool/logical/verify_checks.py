"""The checks of a restore drill (`pgtool.logical.verify_dumps`), each raising VerifyFailure.

Manifest and checksum (steps 1-2), table of contents (3), row counts against the manifest (5) and
amcheck (6). The checksum runs in a thread beside the TOC read and the restore: hashing is I/O plus one
core, and overlapping it with pg_restore keeps it off the drill's wall clock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Generic, TypeVar

import psycopg
from psycopg import sql

from pgtool.errors import OperationError, error_line
from pgtool.logical import dumps
from pgtool.logical.dump_directory import hash_files, read_list, tree_digest
from pgtool.logical.dump_manifest import read_checksum, read_manifest, sha256_file
from pgtool.logical.dump_restore import Toc, read_toc, toc_form
from pgtool.logical.dump_sessions import Ident, session
from pgtool.logical.row_counts import qualified
from pgtool.pg import binaries

T = TypeVar("T")

# Leaf btree indexes only: a partitioned index (relkind 'I') has no storage, bt_index_check refuses it,
# and its partitions' indexes are checked each on its own.
BTREE_INDEXES_SQL = """
SELECT c.oid, n.nspname, c.relname
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
JOIN pg_catalog.pg_am am ON am.oid = c.relam
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE am.amname = 'btree' AND c.relkind = 'i' AND i.indisvalid AND i.indisready
  AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
ORDER BY 2, 3
"""
AMCHECK_SCHEMA_SQL = """
SELECT n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'amcheck'
"""
# Where amcheck goes in a restored copy that lacks it (sessions run with an empty search_path).
AMCHECK_SCHEMA = "pgtool_amcheck"


class VerifyFailure(OperationError):
    """One database's dump did not verify; the message says what (checksum, TOC, restore, rows)."""


def in_background(compute: Callable[[], T]) -> Future[T]:
    """`compute()` in a daemon thread, not an executor's: on SIGTERM the process must not wait for a
    hash of gigabytes to finish before it exits (executor threads are joined at interpreter exit)."""
    job: Future[T] = Future()

    def run() -> None:
        try:
            job.set_result(compute())
        except BaseException as exc:
            job.set_exception(exc)

    threading.Thread(target=run, name="sha256", daemon=True).start()
    return job


class _Hashing(Generic[T]):
    """A dump's hash under way in the background (`in_background`); `hashed()` waits for it, and a
    dump that cannot be read is a VerifyFailure naming it."""

    def __init__(self, dump: Path, compute: Callable[[], T]) -> None:
        self.dump = dump
        self._job = in_background(compute)

    def hashed(self) -> T:
        try:
            return self._job.result()
        except OSError as exc:
            raise VerifyFailure(f"cannot read {self.dump}: {exc.strerror or exc}") from None


class Checksum(_Hashing[str]):
    """The dump's SHA-256, computed in a thread while the TOC is read and the dump restored.

    `check()` waits for it and raises the mismatch. Call it before reporting a TOC or restore error
    too: damage to the file is the better explanation of those.
    """

    def __init__(self, dump: Path, expected: str, manifest_sha: str | None) -> None:
        super().__init__(dump, lambda: sha256_file(dump))
        self.expected, self.manifest_sha = expected, manifest_sha

    def check(self) -> str:
        """The digest, once it matches; VerifyFailure otherwise."""
        actual = self.hashed()
        if actual != self.expected:
            raise VerifyFailure(
                f"checksum mismatch: the file hashes to {actual[:12]}..., "
                f"its .sha256 says {self.expected[:12]}..."
            )
        if self.manifest_sha not in (None, actual):
            raise VerifyFailure("checksum mismatch: the manifest's sha256 differs from the file's")
        return actual


class TreeChecksum(_Hashing[dict[str, str]]):
    """A directory dump's check (the interface of `Checksum`): every file hashed in a thread while the
    TOC is read and the dump restored, compared with the manifest's `files` and the `.dir.sha256` list;
    `check()` names the first file that differs."""

    def __init__(self, dump: Path, listed: dict[str, str], manifest: dict[str, Any]) -> None:
        super().__init__(dump, lambda: hash_files(dump))
        self.listed = listed
        files = manifest.get("files")
        self.recorded: dict[str, str] = files if isinstance(files, dict) else {}
        self.manifest_sha = manifest.get("sha256")

    def check(self) -> str:
        actual = self.hashed()
        if not self.recorded:
            raise VerifyFailure("manifest: a directory dump without its list of files")
        for name, digest in sorted(self.recorded.items()):
            if name not in actual:
                raise VerifyFailure(f"file {name} missing from {self.dump.name}")
            if actual[name] != digest:
                raise VerifyFailure(
                    f"checksum mismatch in {self.dump.name}/{name}: the file hashes to "
                    f"{actual[name][:12]}..., the manifest says {digest[:12]}..."
                )
        extra = sorted(set(actual) - set(self.recorded))
        if extra:
            raise VerifyFailure(f"file {extra[0]} in {self.dump.name} is not in the manifest")
        if self.listed != self.recorded:
            listing = dumps.checksum_path(self.dump).name
            raise VerifyFailure(f"checksum list {listing} differs from the manifest")
        digest = tree_digest(actual)
        if self.manifest_sha != digest:
            raise VerifyFailure("checksum mismatch: the manifest's sha256 differs from its list of files")
        return digest


def tools_for_dump(
    pg: binaries.PgBinaries, manifest: dict[str, Any], pg_bindir: str | None
) -> binaries.PgBinaries:
    """pg_restore must be at least as new as the pg_dump that wrote the archive."""
    try:
        dump_major = int(str(manifest.get("pg_dump_version", "0")).split(".")[0])
    except ValueError:
        return pg
    return pg if dump_major <= pg.major else binaries.for_server(dump_major, pg_bindir)


def check_manifest(
    database: str, dump: Path, pg: binaries.PgBinaries, pg_bindir: str | None
) -> tuple[dict[str, Any], binaries.PgBinaries, Checksum | TreeChecksum]:
    """Step 1, and step 2 started: (manifest, client tools to restore with, the running checksum)."""
    try:
        manifest = read_manifest(dumps.manifest_path(dump))
    except OperationError as exc:
        raise VerifyFailure(exc.message) from None
    if manifest.get("database") != database:
        claimed = manifest.get("database")
        raise VerifyFailure(f"wrong database: the manifest says the dump is of {claimed!r}")
    encoding = manifest.get("database_encoding")
    if encoding is not None and not isinstance(encoding, str):
        # Damaged or foreign: CREATE DATABASE takes it as text (a crash of the whole run otherwise).
        raise VerifyFailure(f"manifest {dumps.manifest_path(dump).name}: database_encoding is not a string")
    pg = tools_for_dump(pg, manifest, pg_bindir)
    if manifest.get("dump_format") == "directory" or dump.is_dir():
        listed = read_list(dumps.checksum_path(dump))
        if listed is None:
            raise VerifyFailure(f"checksum list missing or malformed ({dumps.checksum_path(dump).name})")
        return manifest, pg, TreeChecksum(dump, listed, manifest)
    expected = read_checksum(dumps.checksum_path(dump))
    if expected is None:
        raise VerifyFailure(f"checksum file missing or malformed ({dumps.checksum_path(dump).name})")
    return manifest, pg, Checksum(dump, expected, manifest.get("sha256"))


def check_toc(database: str, dump: Path, pg: binaries.PgBinaries) -> Toc:
    """Step 3: the TOC reads, has entries, and names this database.

    pg_restore prints the name with CR and LF as spaces: the comparison is with that form
    (`toc_form`), so a name holding a newline still matches its own dump.
    """
    toc = read_toc(pg, dump)
    if toc.entries == 0:
        raise VerifyFailure("TOC has no entries")
    if toc.dbname is not None and toc.dbname != toc_form(database):
        raise VerifyFailure(f"wrong database: the dump's TOC says it is of {toc.dbname!r}")
    return toc


def compare_counts(expected: list[dict[str, Any]], restored: list[dict[str, Any]]) -> list[str]:
    """Step 5: what differs between the manifest's counts and the restored copy's, one line each."""
    want = {(t["schema"], t["name"]): t["rows"] for t in expected}
    have = {(t["schema"], t["name"]): t["rows"] for t in restored}
    problems = []
    for key, rows in want.items():
        if key not in have:
            problems.append(f"table {qualified(*key)} missing after restore")
        elif have[key] != rows:
            problems.append(f"row count {qualified(*key)}: {have[key]} restored vs {rows} in the manifest")
    problems += [
        f"table {qualified(*key)} restored but not in the manifest" for key in have if key not in want
    ]
    return problems


def amcheck(dsn: str, scratch: str) -> int:
    """Step 6: `bt_index_check(heapallindexed)` on every leaf btree index; the number checked."""
    with session(dsn, dbname=scratch, application_name="pgtool-verify") as conn:
        try:
            row = conn.execute(AMCHECK_SCHEMA_SQL).fetchone()
            if row is None:
                conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(AMCHECK_SCHEMA)))
                conn.execute(
                    sql.SQL("CREATE EXTENSION amcheck SCHEMA {}").format(sql.Identifier(AMCHECK_SCHEMA))
                )
                row = (AMCHECK_SCHEMA,)
        except psycopg.Error as exc:
            raise VerifyFailure(f"amcheck unavailable: {error_line(exc)}") from None
        check = sql.SQL(
            "SELECT {}.bt_index_check("
            "index => %s::pg_catalog.oid::pg_catalog.regclass, heapallindexed => true)"
        ).format(Ident(row[0]))
        try:
            indexes = conn.execute(BTREE_INDEXES_SQL).fetchall()
        except psycopg.Error as exc:
            raise VerifyFailure(f"amcheck: listing indexes: {error_line(exc)}") from None
        for oid, schema, name in indexes:
            try:
                conn.execute(check, [oid])
            except psycopg.Error as exc:
                raise VerifyFailure(f"amcheck: index {qualified(schema, name)}: {error_line(exc)}") from None
    return len(indexes)
