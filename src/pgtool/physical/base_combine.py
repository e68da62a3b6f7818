"""Restore a chain of incremental base backups: every member verified, then pg_combinebackup.

pg_combinebackup reads plain-format backups only, and pgtool stores tar format. So each member of the
chain (`base_chain.chain_of`, the full backup first) is checked and unpacked into a scratch directory
beside PGDATA:
1. before anything is unpacked, every member's manifest must be whole (its own SHA-256 checksum) and
   its base tar present, so a damaged or half-deleted member stops the restore at once;
2. each member is unpacked (base.tar, its manifest beside it; the WAL of the newest member only: the
   others' WAL is never replayed) and checked with `pg_verifybackup --no-parse-wal` (every file against
   the manifest's checksums); the first failure stops the restore;
3. `pg_combinebackup` writes the combined data directory into PGDATA. With PostgreSQL 18 tools it runs
   with `--link` (the scratch directory is on PGDATA's filesystem and removed afterwards, so the hard
   links are the only copies left): a file unchanged since the full backup is not copied twice.
The scratch directory is removed whatever happens. Nothing here starts a server, so a broken chain is
refused before any replay.

Tablespaces: pg_combinebackup follows pg_tblspc links of plain backups, which tar backups do not
have; a chain with tablespaces is refused with a clear error (restore the full backup instead).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from pgtool.errors import BinaryNotFoundError, OperationError
from pgtool.obs.logging import get_logger
from pgtool.pg.binaries import PgBinaries
from pgtool.physical import base_unpack, base_verify
from pgtool.physical.base_catalog import MANIFEST_FILE, BaseBackupInfo
from pgtool.physical.tar_stream import extract, tar_stem


def restore_chain(
    chain: list[BaseBackupInfo], pgdata: Path, tools: PgBinaries, scratch_parent: Path | None = None
) -> base_unpack.Unpacked:
    """Restore `chain` (oldest first, each with its local `path`) into the empty directory `pgdata`.

    A single full backup is unpacked as always; a longer chain is verified and combined (see the
    module docstring). scratch_parent: where the unpacked members go (default: beside pgdata).
    Raises OperationError naming the member that fails.
    """
    if len(chain) == 1:
        return base_unpack.unpack_base_backup(chain[0], pgdata)
    log = get_logger().bind(backup=chain[-1].id, chain=len(chain))
    with_spaces = [m.id for m in chain if m.tablespaces]
    if with_spaces:
        raise OperationError(
            f"base backup {chain[-1].id} is incremental and its chain has tablespaces "
            f"({', '.join(with_spaces)}): pgtool cannot combine tar backups with tablespaces",
            hint=f"restore the full backup {chain[0].id} (--backup) and replay WAL from it",
        )
    for tool in ("pg_combinebackup", "pg_verifybackup"):
        if not tools.has(tool):
            raise BinaryNotFoundError(f"{tool} not found in {tools.bindir}: it restores incremental backups")
    for member in chain:
        _check_present(member)
    base_unpack.ensure_empty_dir(pgdata)
    parent = Path(scratch_parent) if scratch_parent is not None else pgdata.parent
    work = Path(tempfile.mkdtemp(prefix=".pgtool-combine-", dir=parent))
    try:
        plain = [_unpack_plain(m, work / m.id, tools, wal=m is chain[-1]) for m in chain]
        from pgtool.pg import command

        link = ["--link"] if tools.major >= 18 else []
        log.info("combining the chain", members=[m.id for m in chain])
        command.run(
            [tools.path("pg_combinebackup"), *link, "--output", str(pgdata), *map(str, plain)],
            what="pg_combinebackup",
            log_stderr_level="debug",  # --link always warns that the inputs share the output's files
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = base_unpack.Unpacked(pgdata=pgdata, bytes_written=_du(pgdata))
    base_unpack.finish(pgdata, result)
    log.info("incremental chain restored", bytes=result.bytes_written)
    return result


def _check_present(member: BaseBackupInfo) -> None:
    """The cheap checks first: a whole manifest and a base tar (OperationError naming the member)."""
    if member.path is None or not member.path.is_dir():
        raise OperationError(f"base backup {member.id} of the chain is not readable here")
    try:
        base_verify.read_manifest(member.path)
    except OperationError as exc:
        raise OperationError(f"base backup {member.id} of the chain is damaged: {exc.message}") from None
    if not any(tar_stem(p.name) == "base" for p in member.path.iterdir()):
        raise OperationError(f"base backup {member.id} of the chain has no base.tar: it is damaged")


def _unpack_plain(member: BaseBackupInfo, target: Path, tools: PgBinaries, *, wal: bool) -> Path:
    """Unpack one member as a plain-format backup in `target` and verify it against its manifest."""
    from pgtool.errors import ExternalCommandError
    from pgtool.pg import command

    assert member.path is not None
    target.mkdir(mode=0o700)
    tars = {stem: p for p in sorted(member.path.iterdir()) if (stem := tar_stem(p.name)) is not None}
    try:
        extract(tars["base"], target)
        (target / "pg_wal").mkdir(mode=0o700, exist_ok=True)
        if wal and "pg_wal" in tars:
            extract(tars["pg_wal"], target / "pg_wal")
    except (OSError, ValueError, OperationError) as exc:
        raise OperationError(f"base backup {member.id} of the chain cannot be unpacked: {exc}") from None
    shutil.copyfile(member.path / MANIFEST_FILE, target / MANIFEST_FILE)
    try:
        command.run(
            [tools.path("pg_verifybackup"), "--no-parse-wal", "--quiet", str(target)],
            what="pg_verifybackup",
        )
    except ExternalCommandError as exc:
        raise OperationError(
            f"base backup {member.id} of the chain fails pg_verifybackup: {exc.stderr_tail.strip()}",
            hint="the chain cannot be restored; restore an older complete chain (--backup)",
        ) from None
    return target


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
