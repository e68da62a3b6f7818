"""Where `pgtool verify` restores dumps: a throwaway local cluster of its own (the default), or a scratch
server named by `--target-dsn`. Never the production server by default: a drill there writes a full
copy's worth of WAL into its archive and onto its replicas, competes for its I/O, and restores tenant
dumps as a privileged role next to production data.

The own cluster (`own_cluster`) is initdb'd from the server binaries of the dumps' source major where
installed, else the newest installed major above it (pg_restore needs a server at least as new as the
dump's source); none: BinaryNotFoundError. It listens only on a unix socket in a private directory
(trust authentication, no TCP), on a free port, with fsync off (its data is thrown away), and is
stopped and deleted when the block ends, whatever ends it (a failure, SIGTERM: the runner turns it into
an exception that unwinds the block). In it, the newest stored globals are restored first
(`pgtool.logical.globals_dump`), so each dump restores with its owners and grants, and the database's
own properties are checked (`pgtool.logical.db_properties`).

The evidence layer (`pgtool.evidence.drills`) hands only a DSN through to the drill: the drill asks
`describe(dsn)` which kind of server it is.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pgtool.errors import BinaryNotFoundError, PgtoolError
from pgtool.logical import dumps, globals_dump, repo_catalog
from pgtool.logical.dump_manifest import read_manifest
from pgtool.obs.logging import get_logger
from pgtool.pg import binaries
from pgtool.repo import Repository

SUPERUSER = "postgres"
_SERVER_TOOLS = ("initdb", "pg_ctl", "postgres", "psql")


@dataclass
class DrillServer:
    """The server a drill restores into. `own`: the drill's own cluster, where globals are restored."""

    dsn: str
    own: bool = False
    tools: binaries.PgBinaries | None = None
    scratch: Path | None = None
    fetch_globals: Callable[[Path], Path | None] | None = None

    def prepare(self) -> bool:
        """Restore the newest globals into the own cluster; whether owners and grants can be restored.

        False on a scratch server, and when no globals are stored (dumps from before pgtool stored
        them: the drill then restores without owners and grants, as on a scratch server).
        Raises GlobalsError (they are stored but do not restore).
        """
        if not self.own or self.fetch_globals is None:
            return False
        assert self.tools is not None and self.scratch is not None
        found = self.fetch_globals(self.scratch)
        if found is None:
            get_logger().warning(
                "no globals stored beside the dumps: restoring without owners and grants",
                hint="pgtool backup stores them from this version on",
            )
            return False
        globals_dump.restore(self.dsn, self.tools, found, self.scratch)
        return True


_ACTIVE: dict[str, DrillServer] = {}


def describe(dsn: str) -> DrillServer:
    """The drill server `dsn` names: an own cluster this process runs, else a scratch server."""
    return _ACTIVE.get(dsn) or DrillServer(dsn)


def server_binaries(source_major: int | None, pg_bindir: str | None) -> binaries.PgBinaries:
    """The installed server of exactly `source_major`, else the newest newer one (None: the newest)."""
    servers = [i for i in binaries.installations(pg_bindir) if all(i.has(t) for t in _SERVER_TOOLS)]
    exact = [i for i in servers if i.major == source_major]
    if exact:
        return exact[0]
    newer = sorted(
        (i for i in servers if source_major is None or i.major > source_major), key=lambda i: i.major
    )
    if newer:
        return newer[-1]
    have = ", ".join(sorted({str(i.major) for i in servers})) or "none"
    wanted = f"{source_major} or newer" if source_major else "any version"
    raise BinaryNotFoundError(
        f"no PostgreSQL server binaries of version {wanted} to drill in (server installations found: {have})",
        hint=f"install the postgresql-{source_major or 18} server package, pass --pg-bindir, "
        "or drill on a scratch server with --target-dsn",
    )


def _major(manifest: dict[str, object]) -> int | None:
    num = manifest.get("server_version_num")
    return num // 10000 if isinstance(num, int) and num > 0 else None


def source_major_in_dir(backup_dir: Path, targets: list[str]) -> int | None:
    """The newest source major among the targets' newest dumps (unreadable manifests: the drill's finding)."""
    majors = []
    for database in targets:
        files = dumps.dump_files(dumps.database_dir(backup_dir, database))
        if files:
            with contextlib.suppress(PgtoolError, OSError):
                majors.append(_major(read_manifest(dumps.manifest_path(files[-1][1]))))
    return max((m for m in majors if m is not None), default=None)


def source_major_in_repo(repo: Repository, targets: list[str]) -> int | None:
    majors = []
    for database in targets:
        complete = repo_catalog.complete_dumps(repo, database)
        if complete:
            manifest = repo_catalog.read_json(repo, complete[-1].manifest_object)
            majors.append(_major(manifest) if manifest else None)
    return max((m for m in majors if m is not None), default=None)


# The drill's cluster is thrown away: nothing in it needs to survive a crash, so it skips what makes a
# restore slow on a real server (WAL beyond the minimum, full-page images, checkpoints mid-restore,
# autovacuum competing with pg_restore and the row counts for the same cores). What the drill proves,
# that the dump restores and holds what was dumped, does not depend on any of these.
DRILL_SETTINGS = {
    "shared_preload_libraries": "",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "archive_mode": "off",
    "full_page_writes": "off",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "1h",
    "autovacuum": "off",
    "maintenance_work_mem": "256MB",
}


@contextlib.contextmanager
def own_cluster(
    source_major: int | None,
    *,
    jobs: int,
    pg_bindir: str | None,
    fetch_globals: Callable[[Path], Path | None],
) -> Iterator[str]:
    """Start the drill's own cluster; yield its maintenance DSN; stop and delete it afterwards."""
    from pgtool.pg.cluster import LocalCluster
    from pgtool.pg.privileges import give_to_server, make_server_dir

    tools = server_binaries(source_major, pg_bindir)
    # pg_restore's workers and the row-counting sessions beside them, per database, plus the drill's own.
    settings = {"listen_addresses": "", "max_connections": str(max(100, 2 * jobs + 20)), **DRILL_SETTINGS}
    root = Path(tempfile.mkdtemp(prefix="pgtool-verify-"))
    give_to_server(root)
    cluster: LocalCluster | None = None
    dsn = ""
    try:
        cluster = LocalCluster(tools, root / "cluster", settings=settings, superuser=SUPERUSER)
        scratch = make_server_dir(root / "scratch", 0o700)
        cluster.init()
        cluster.set_hba(["local all all trust"])
        get_logger().info(
            "starting the drill's own cluster", version=cluster.binaries.version, source_major=source_major
        )
        cluster.start()
        dsn = cluster.dsn()
        _ACTIVE[dsn] = DrillServer(dsn, True, cluster.binaries, scratch, fetch_globals)
        yield dsn
    finally:
        _ACTIVE.pop(dsn, None)
        if cluster is not None:
            cluster.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def globals_in_dir(backup_dir: Path) -> Callable[[Path], Path | None]:
    return lambda _scratch: globals_dump.newest_in_dir(backup_dir)


def globals_in_repo(repo: Repository) -> Callable[[Path], Path | None]:
    def fetch(scratch: Path) -> Path | None:
        local = scratch / "stored-globals.sql"
        return local if globals_dump.newest_from_repo(repo, local) is not None else None

    return fetch


@contextlib.contextmanager
def drill_target(
    target_dsn: str | None,
    *,
    backup_dir: Path | None = None,
    repo: Repository | None = None,
    databases: list[str],
    jobs: int,
    pg_bindir: str | None,
) -> Iterator[str]:
    """The DSN the drill restores into: `target_dsn` as given, else the own cluster's while it runs.

    With nothing to drill (no dumps, no backup directory) no cluster is started and the DSN is empty:
    the drill reports that before it connects anywhere.
    """
    if target_dsn is not None:
        yield target_dsn
        return
    from pgtool.logical.verify_dumps import databases_in

    targets = list(databases)
    if repo is not None:
        targets = targets or repo_catalog.databases(repo)
        major, fetch = source_major_in_repo(repo, targets), globals_in_repo(repo)
    else:
        assert backup_dir is not None
        if not targets and Path(backup_dir).is_dir():
            targets = databases_in(Path(backup_dir))
        major, fetch = source_major_in_dir(Path(backup_dir), targets), globals_in_dir(Path(backup_dir))
    if not targets or (repo is None and not Path(backup_dir or "").is_dir()):
        yield ""
        return
    with own_cluster(major, jobs=jobs, pg_bindir=pg_bindir, fetch_globals=fetch) as dsn:
        yield dsn
