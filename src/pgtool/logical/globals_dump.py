"""The cluster's global objects (roles, memberships, tablespaces): stored by `backup`, restored by `verify`.

`pg_dumpall --globals-only` beside the dumps, since a database's dump names roles it does not contain:
- a backup directory: `DEST/.globals/<stamp>.sql` (0600) with `<stamp>.sql.sha256`;
- a repository: `dumps/.globals/<stamp>/globals.sql` (checksummed and, with a key, encrypted like every
  object). A leading dot keeps it out of the per-database listing: no database name encodes to it.
Role passwords (hashes) are left out (`--no-role-passwords`) unless asked for, and then only into an
encrypted repository (the CLI refuses anything else).

The drill's own cluster gets the newest globals through psql before any dump is restored. Each
statement runs on its own: "role ... already exists" (the drill cluster's bootstrap superuser) is the
only error tolerated, any other fails the drill. Tablespace locations are production paths the drill
cannot create: each CREATE TABLESPACE is pointed at a directory of the drill's own.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pgtool.errors import OperationError, PgtoolError, error_line
from pgtool.logical import dumps
from pgtool.logical.dump_manifest import checksum_line, read_checksum, sha256_file, write_durably
from pgtool.obs.logging import get_logger
from pgtool.pg import binaries, command
from pgtool.repo import Repository
from pgtool.repo.layout import DUMPS

GLOBALS_DIR = ".globals"
REPO_PREFIX = f"{DUMPS}/{GLOBALS_DIR}/"
REPO_OBJECT = "globals.sql"
_FILE = re.compile(rf"^({dumps._STAMP_RE})\.sql$")
_TABLESPACE = re.compile(r"^(CREATE TABLESPACE .+ OWNER .+ LOCATION )E?'(?:[^']|'')*';$", re.M)
_ALREADY_EXISTS = re.compile(r'ERROR:\s+role ".*" already exists$')


class GlobalsError(OperationError):
    """The globals could not be stored, read or restored."""


def store(do: Callable[[], str]) -> tuple[str | None, str | None]:
    """(where the globals went, None) or (None, the error): a failure fails the run, not the dumps."""
    try:
        where = do()
    except (PgtoolError, OSError) as exc:
        get_logger().error("globals not stored", error=error_line(exc))
        return None, error_line(exc)
    get_logger().info("globals stored", location=where)
    return where, None


def dump_to(dsn: str, pg: binaries.PgBinaries, path: Path, *, with_passwords: bool) -> None:
    """`pg_dumpall --globals-only` of the server `dsn` names, into `path` (created 0600)."""
    from pgtool.pg import conninfo

    dbname = conninfo.parse(dsn).get("dbname")
    path.touch(mode=0o600)
    with command.libpq_args(dsn, application_name="pgtool-backup-pg_dumpall") as (target, env):
        argv = [
            pg.path("pg_dumpall"),
            "--globals-only",
            "--no-password",
            *([] if with_passwords else ["--no-role-passwords"]),
            f"--file={path}",
            f"--dbname={target}",
            # pg_dumpall ignores the conninfo's dbname: the database to connect to is -l's.
            *([f"--database={dbname}"] if dbname else []),
        ]
        try:
            command.run(argv, env=env, what="pg_dumpall --globals-only")
        except PgtoolError as exc:
            raise GlobalsError(exc.message) from None


def store_in_dir(dest: Path, dsn: str, pg: binaries.PgBinaries, *, with_passwords: bool) -> Path:
    """Dump the globals into `dest/.globals/<stamp>.sql` (+ .sha256, written first); the file's path."""
    from pgtool.durable_write import fsync_path

    directory = dest / GLOBALS_DIR
    directory.mkdir(mode=0o700, exist_ok=True)
    stamp = dumps.format_stamp(datetime.now(UTC))
    final = directory / f"{stamp}.sql"
    partial = directory / f".{stamp}.sql.partial"
    try:
        dump_to(dsn, pg, partial, with_passwords=with_passwords)
        fsync_path(partial)
        write_durably(_checksum(final), checksum_line(sha256_file(partial), final.name).encode())
        os.replace(partial, final)
        fsync_path(directory, directory=True)
    finally:
        partial.unlink(missing_ok=True)
    return final


def _checksum(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def newest_in_dir(backup_dir: Path) -> Path | None:
    """The newest stored globals under `backup_dir`, its checksum verified; None if none is stored."""
    directory = backup_dir / GLOBALS_DIR
    found = sorted(p for p in directory.glob("*.sql") if _FILE.match(p.name)) if directory.is_dir() else []
    if not found:
        return None
    newest = found[-1]
    expected = read_checksum(_checksum(newest))
    if expected is None or expected != sha256_file(newest):
        raise GlobalsError(f"globals {newest}: checksum missing or mismatched")
    return newest


def retention_in_dir(backup_dir: Path, retention_days: int) -> list[Path]:
    """Delete stored globals older than the cutoff, never the newest; the files deleted."""
    directory = backup_dir / GLOBALS_DIR
    found = sorted(p for p in directory.glob("*.sql") if _FILE.match(p.name)) if directory.is_dir() else []
    cutoff = datetime.now(UTC) - timedelta(days=retention_days)
    removed = []
    for path in found[:-1]:
        if dumps.parse_stamp(path.name[: -len(".sql")]) < cutoff:
            path.unlink(missing_ok=True)
            _checksum(path).unlink(missing_ok=True)
            removed.append(path)
    return removed


def _repo_stamps(repo: Repository) -> list[str]:
    stamps = set()
    for info in repo.list(REPO_PREFIX):
        stamp, _, name = info.name[len(REPO_PREFIX) :].partition("/")
        if name == REPO_OBJECT and re.fullmatch(dumps._STAMP_RE, stamp):
            stamps.add(stamp)
    return sorted(stamps)


def store_in_repo(repo: Repository, dsn: str, pg: binaries.PgBinaries, *, with_passwords: bool) -> str:
    """Dump the globals into `dumps/.globals/<stamp>/globals.sql`; the object's name."""
    stamp = dumps.format_stamp(datetime.now(UTC))
    name = f"{REPO_PREFIX}{stamp}/{REPO_OBJECT}"
    with tempfile.TemporaryDirectory(prefix="pgtool-globals-") as scratch:
        local = Path(scratch) / REPO_OBJECT
        dump_to(dsn, pg, local, with_passwords=with_passwords)
        if repo.exists(name):  # a second run within the same second: the newer content wins
            repo.delete(name)
        repo.put_file(name, local)
    return name


def newest_from_repo(repo: Repository, dest: Path) -> str | None:
    """Download (verified) the newest stored globals to `dest`; its object name, or None if none."""
    stamps = _repo_stamps(repo)
    if not stamps:
        return None
    name = f"{REPO_PREFIX}{stamps[-1]}/{REPO_OBJECT}"
    repo.read_to_file(name, dest)
    return name


def retention_in_repo(repo: Repository, retention_days: int) -> list[str]:
    cutoff = datetime.now(UTC) - timedelta(days=retention_days)
    removed = []
    for stamp in _repo_stamps(repo)[:-1]:
        if dumps.parse_stamp(stamp) < cutoff:
            name = f"{REPO_PREFIX}{stamp}/{REPO_OBJECT}"
            repo.delete(name)
            removed.append(repo.where(name))
    return removed


def restore(dsn: str, pg: binaries.PgBinaries, globals_file: Path, scratch: Path) -> None:
    """Run `globals_file` through psql against the drill's own cluster (`dsn`, a superuser).

    `scratch`: a directory the server user owns, for the tablespaces and the rewritten script.
    Raises GlobalsError naming the first statement that failed for another reason than an existing role.
    """
    from pgtool.pg.privileges import make_server_dir

    text = globals_file.read_bytes().decode("utf-8", "surrogateescape")
    count = 0

    def relocate(match: re.Match[str]) -> str:
        nonlocal count
        count += 1
        location = make_server_dir(scratch / f"tablespace-{count}", 0o700)
        return f"{match.group(1)}'{location}';"

    script = scratch / "globals.sql"
    script.write_bytes(_TABLESPACE.sub(relocate, text).encode("utf-8", "surrogateescape"))
    lines: list[str] = []

    def collect(line: str) -> bool:
        lines.append(line)
        return True

    with command.libpq_args(dsn, application_name="pgtool-verify-globals") as (target, env):
        argv = [
            pg.path("psql"),
            "--no-psqlrc",
            "--quiet",
            "--no-password",
            "--set=ON_ERROR_STOP=0",
            f"--dbname={target}",
            f"--file={script}",
        ]
        try:
            command.run(argv, env=env, what="psql (globals)", on_progress=collect)
        except PgtoolError as exc:
            raise GlobalsError(f"globals do not restore: {exc.message}") from None
    errors = [line for line in lines if "ERROR:" in line and not _ALREADY_EXISTS.search(line)]
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise GlobalsError(f"globals do not restore: {errors[0]}{more}")
    get_logger().info("globals restored", file=str(globals_file), tablespaces=count)
