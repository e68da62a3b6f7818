"""`pgtool recover`: prepare a data directory for point-in-time recovery or as a streaming standby.

It picks the base backup (the newest that finished before the target, by its recorded stop time, LSN
or next transaction id), checks the WAL archive has no gap between that backup and the target,
unpacks the backup (an incremental one with its whole chain, each member verified, combined with
pg_combinebackup: `chain_restore`; a missing member is refused before anything is written), writes
the recovery settings and signal file, and returns the exact command that starts the server. It
never starts the server itself: the operator decides when and where.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pgtool.config import redact_dsn
from pgtool.errors import OperationError, UsageError
from pgtool.obs.logging import get_logger
from pgtool.physical import base_catalog, base_chain
from pgtool.physical.base_catalog import BaseBackupInfo
from pgtool.recovery import archive_continuity, chain_restore, recovery_config
from pgtool.recovery.recovery_config import RecoveryTarget
from pgtool.recovery.wal_source import DirArchive, RepoArchive, WalArchive
from pgtool.wal.listing import parse_lsn

if TYPE_CHECKING:
    from pgtool.repo import Repository


@dataclass
class RecoverResult:
    backup: BaseBackupInfo
    pgdata: Path
    target: RecoveryTarget | None
    standby: bool
    start_command: str
    continuity: archive_continuity.Continuity | None
    notes: list[str] = field(default_factory=list)
    end_of_archive: str | None = None  # without a target: the LSN recovery must reach before promoting


def parse_target_time(text: str) -> datetime:
    """ISO 8601 with an offset (`2026-11-24T16:30:00.25+00:00`, `...Z`); UsageError without one."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"--target-time {text!r} is not an ISO 8601 time", hint="e.g. 2026-11-24T16:30:00+00:00"
        ) from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise UsageError(
            f"--target-time {text!r} has no UTC offset",
            hint="add one, e.g. 2026-11-24T16:30:00+00:00: a time without an offset is ambiguous",
        )
    return value


def build_target(
    *,
    time: str | None = None,
    lsn: str | None = None,
    xid: str | None = None,
    name: str | None = None,
    immediate: bool = False,
) -> RecoveryTarget | None:
    """One RecoveryTarget from the mutually exclusive --target-* options (UsageError if several)."""
    given = [k for k, v in (("time", time), ("lsn", lsn), ("xid", xid), ("name", name)) if v] + (
        ["immediate"] if immediate else []
    )
    if len(given) > 1:
        raise UsageError(
            f"give at most one recovery target (got {', '.join('--target-' + g for g in given)})"
        )
    if not given:
        return None
    if time:
        return RecoveryTarget("time", parse_target_time(time).isoformat(sep=" "))
    if lsn:
        try:
            return RecoveryTarget("lsn", recovery_lsn(lsn))
        except ValueError as exc:
            raise UsageError(f"--target-lsn: {exc}") from None
    if xid:
        if not xid.isdigit() or int(xid) < 3:
            raise UsageError(f"--target-xid {xid!r} is not a transaction id (a number of 3 or more)")
        return RecoveryTarget("xid", str(int(xid)))
    if name:
        return RecoveryTarget("name", name)
    return RecoveryTarget("immediate")


def recovery_lsn(text: str) -> str:
    from pgtool.wal.listing import format_lsn

    return format_lsn(parse_lsn(text))


def choose_backup(
    backups: list[BaseBackupInfo], target: RecoveryTarget | None, backup_id: str | None = None
) -> BaseBackupInfo:
    """The newest backup that finished before `target` (backups: oldest first).

    Time and LSN targets compare with the recorded stop time / stop LSN, xid targets with the next
    transaction id recorded at the end of the backup. Name targets cannot be placed without reading
    WAL: the caller tries backups oldest first. Raises OperationError when no backup qualifies.
    """
    if not backups:
        raise OperationError("no complete base backup found", hint="take one with pgtool basebackup")
    candidates = backups
    if backup_id is not None:
        candidates = [b for b in backups if b.id == backup_id]
        if not candidates:
            raise UsageError(
                f"no complete base backup {backup_id!r}", hint=f"known: {', '.join(b.id for b in backups)}"
            )
    if target is None or target.kind in ("immediate", "name"):
        return candidates[-1]
    if target.kind == "time":
        when = datetime.fromisoformat(target.value)
        usable = [b for b in candidates if b.stop_datetime <= when]
        earliest = f"the oldest finished at {candidates[0].stop_time}"
    elif target.kind == "lsn":
        lsn = parse_lsn(target.value)
        usable = [b for b in candidates if parse_lsn(b.stop_lsn) <= lsn]
        earliest = f"the oldest ends at LSN {candidates[0].stop_lsn}"
    else:
        xid = int(target.value)
        usable = [b for b in candidates if b.next_xid is not None and b.next_xid <= xid]
        earliest = f"the oldest had next xid {candidates[0].next_xid}"
    if not usable:
        raise OperationError(
            f"recovery target {target.describe()} is earlier than every base backup ({earliest})",
            hint="a base backup can only recover to points after it finished",
        )
    return usable[-1]


def start_command(pgdata: Path, major: int, pg_bindir: str | None) -> tuple[str, list[str]]:
    """The shell command that starts the recovered server, and notes (e.g. binaries not found here)."""
    from pgtool.errors import BinaryNotFoundError
    from pgtool.pg import binaries
    from pgtool.pg.privileges import server_user

    notes = []
    try:
        pg_ctl = binaries.find_major(major, pg_bindir).path("pg_ctl")
    except BinaryNotFoundError:
        pg_ctl = "pg_ctl"
        notes.append(f"PostgreSQL {major} binaries were not found here: run the {major} pg_ctl")
    argv = [pg_ctl, "-D", str(pgdata), "-l", str(pgdata / "pgtool-recovery.log"), "start"]
    user = server_user() if os.geteuid() == 0 else None
    if user:
        argv = ["runuser", "-u", user, "--", *argv]
    return shlex.join(argv), notes


def prepare_recovery(
    base_dir: Path | None,
    archive_dir: Path | None,
    pgdata: Path,
    *,
    target: RecoveryTarget | None = None,
    standby: bool = False,
    primary_conninfo: str | None = None,
    port: int | None = None,
    backup_id: str | None = None,
    pg_bindir: str | None = None,
    allow_unverified_wal: bool = False,
    repo: Repository | None = None,
    repo_key_file: str | None = None,
) -> RecoverResult:
    """Prepare `pgdata` for recovery (see the module docstring); nothing is written before all checks pass.

    From directories (base_dir and archive_dir) or from a repository (repo; base_dir and archive_dir
    None). repo_key_file: the key file the recovered server's `restore-wal --repo` is given (None: it
    reads $PGTOOL_REPO_KEY_FILE from its own environment).
    """
    log = get_logger()
    if standby and target is not None:
        raise UsageError("a standby follows its primary: --standby does not take a --target-*")
    if standby and not primary_conninfo:
        raise UsageError("--standby needs --primary-conninfo (how the standby reaches its primary)")
    if primary_conninfo and not standby:
        raise UsageError("--primary-conninfo is only for --standby")
    if port is not None and not 1 <= port <= 65535:
        raise UsageError(f"--port {port} is not a TCP port")
    pgdata = Path(pgdata).absolute()
    if pgdata.exists() and (not pgdata.is_dir() or any(pgdata.iterdir())):
        raise UsageError(
            f"{pgdata} is not empty", hint="give a new or empty directory for the recovered copy"
        )
    archive, backups = _sources(base_dir, archive_dir, repo, repo_key_file, allow_unverified_wal)
    if not standby:
        archive.check_not_empty()

    continuity = None
    if target is not None and target.kind == "name" and backup_id is None:
        backup, continuity = _oldest_restorable(backups, archive)
    else:
        backup = choose_backup(backups, target, backup_id)
        continuity = _check_archive(archive, backup, target, standby)
    chain = base_chain.chain_of(backups, backup)  # a broken chain: refused before anything is written
    notes: list[str] = []
    if continuity is not None and continuity.gap:
        notes.append(_gap_note(continuity, target))
    if target is not None and target.kind == "time" and continuity and continuity.last_segment_mtime:
        when = datetime.fromisoformat(target.value).timestamp()
        if when > continuity.last_segment_mtime:
            notes.append(
                f"the newest archived segment ({continuity.last_segment}) was archived before the target "
                "time: "
                "recovery may end before reaching it (PostgreSQL then stops with an error)"
            )
    end_lsn = None
    if target is None and not standby:
        # An explicit end: PostgreSQL then refuses to promote before it (a missing segment is an error).
        end_lsn = _end_of_archive(archive, backup, continuity, pg_bindir, allow_unverified_wal)
        if end_lsn is not None:
            target = RecoveryTarget("lsn", end_lsn)
    settings = recovery_config.recovery_settings(
        archive,
        target=target,
        standby=standby,
        primary_conninfo=primary_conninfo,
        port=port,
        allow_unverified=allow_unverified_wal,
    )
    log.info("recovering", backup=backup.id, target=target.describe() if target else "end of archive")

    from pgtool.pg.terminate import sigterm_raises

    created = not pgdata.exists()
    mode = None if created else pgdata.stat().st_mode  # an empty PGDATA given is left as it was
    tablespaces = pgdata.with_name(pgdata.name + ".tablespaces")
    tablespaces_created = not tablespaces.exists()
    with sigterm_raises():
        try:
            unpacked = chain_restore.restore(chain, pgdata, repo=repo, pg_bindir=pg_bindir)
            recovery_config.write_recovery_config(pgdata, settings, standby=standby)
        except BaseException:
            _undo(pgdata, created, tablespaces if tablespaces_created else None)
            if mode is not None:
                pgdata.chmod(mode)
            raise
    if repo is not None:
        notes.append(
            "the server runs restore-wal --repo: start it with the same AWS_* or AZURE_STORAGE_* "
            "environment as this command"
            + ("" if repo_key_file else ", and PGTOOL_REPO_KEY_FILE if the repository is encrypted")
        )
    notes.extend(unpacked.notes)
    command, cmd_notes = start_command(pgdata, backup.major, pg_bindir)
    notes.extend(cmd_notes)
    if primary_conninfo:
        log.info("standby configured", primary_conninfo=redact_dsn(primary_conninfo))
    return RecoverResult(
        backup=backup,
        pgdata=pgdata,
        target=target,
        standby=standby,
        start_command=command,
        continuity=continuity,
        notes=notes,
        end_of_archive=end_lsn,
    )


def _sources(
    base_dir: Path | None,
    archive_dir: Path | None,
    repo: Repository | None,
    repo_key_file: str | None,
    allow_unverified: bool,
) -> tuple[WalArchive, list[BaseBackupInfo]]:
    """The WAL archive and the base backups (oldest first) recovery reads."""
    if repo is not None:
        if base_dir is not None or archive_dir is not None:
            raise UsageError("give --repo or --base-dir and --archive-dir, not both")
        if allow_unverified:
            raise UsageError(
                "--allow-unverified-wal is for archive directories: every object in a repository "
                "carries its checksum"
            )
        from pgtool.physical import repo_catalog

        return RepoArchive(repo, repo_key_file), repo_catalog.list_base_backups(repo)
    if base_dir is None or archive_dir is None:
        raise UsageError("recover needs --repo, or --base-dir and --archive-dir")
    archive = DirArchive(archive_dir)
    archive.check_exists()
    backups = base_catalog.list_base_backups(Path(base_dir))
    if not backups and not Path(base_dir).is_dir():
        raise UsageError(f"base backup directory {base_dir} does not exist")
    return archive, backups


def _end_of_archive(
    archive_dir: WalArchive,
    backup: BaseBackupInfo,
    continuity: archive_continuity.Continuity | None,
    pg_bindir: str | None,
    allow_unverified: bool = False,
) -> str | None:
    """The LSN of the archive's last complete record (None: the archive ends inside the backup)."""
    from pgtool.pg import binaries
    from pgtool.recovery.archive_end import end_target

    if continuity is None:
        return None
    pg_waldump = binaries.find_major(backup.major, pg_bindir).path("pg_waldump")
    return end_target(
        archive_dir, backup, continuity.last_segment, pg_waldump, allow_unverified=allow_unverified
    )


def _undo(pgdata: Path, created: bool, tablespaces: Path | None) -> None:
    """Remove a half-unpacked copy (PGDATA was empty or missing before: nothing of the user's is lost)."""
    import shutil

    if tablespaces is not None:
        shutil.rmtree(tablespaces, ignore_errors=True)
    if created:
        shutil.rmtree(pgdata, ignore_errors=True)
        return
    for entry in pgdata.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _check_archive(
    archive_dir: WalArchive, backup: BaseBackupInfo, target: RecoveryTarget | None, standby: bool
) -> archive_continuity.Continuity:
    if target is not None and target.kind == "immediate":
        until = parse_lsn(backup.stop_lsn)  # carried by the backup itself
    elif target is not None and target.kind == "lsn":
        until = parse_lsn(target.value)
    elif standby:
        until = parse_lsn(backup.stop_lsn)  # the primary streams the rest
    else:
        until = None  # time/xid cannot be placed by name: the archive must be whole to its end
    desc = target.describe() if target else ("standby start" if standby else "the end of the archive")
    # A time or xid cannot be placed by file name: a gap after the backup ends the checked range, and
    # PostgreSQL stops with an error (never promotes) if the target lies beyond it.
    placeable = target is not None and target.kind in ("time", "xid")
    continuity = archive_continuity.check_continuity(
        archive_dir,
        backup,
        until_lsn=until,
        purpose=f"to recover base backup {backup.id} to {desc}",
        allow_gap=placeable,
    )
    if continuity.gap and target is not None and target.kind == "time" and continuity.last_segment_mtime:
        when = datetime.fromisoformat(target.value).timestamp()
        if when > continuity.last_segment_mtime:
            archived = datetime.fromtimestamp(continuity.last_segment_mtime).astimezone().isoformat()
            raise OperationError(
                f"recovery target {target.describe()} lies after a gap in WAL archive {archive_dir.display}: "
                f"segment {continuity.gap} is missing, and {continuity.last_segment} before it was "
                f"archived at {archived}",
                hint=f"recover to a time before {archived}, or from a base backup taken after the gap",
            )
    return continuity


def _gap_note(continuity: archive_continuity.Continuity, target: RecoveryTarget | None) -> str:
    what = target.describe() if target else "the target"
    return (
        f"the WAL archive has a gap at {continuity.gap}: recovery can reach {what} only if it lies "
        f"before it (WAL checked up to {continuity.last_segment}); otherwise PostgreSQL stops with "
        "an error instead of promoting"
    )


def _oldest_restorable(
    backups: list[BaseBackupInfo], archive_dir: WalArchive
) -> tuple[BaseBackupInfo, archive_continuity.Continuity]:
    """For a named restore point: the oldest backup whose WAL is whole to the end of the archive."""
    if not backups:
        raise OperationError("no complete base backup found", hint="take one with pgtool basebackup")
    first_error: OperationError | None = None
    for backup in backups:
        try:
            return backup, archive_continuity.check_continuity(archive_dir, backup)
        except OperationError as exc:
            first_error = first_error or exc
    assert first_error is not None
    raise first_error
