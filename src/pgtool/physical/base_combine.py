"""Restore a chain of incremental base backups: every member verified, then pg_combinebackup.

pg_combinebackup reads plain-format backups only, and pgtool stores tar format. So each member of the
chain (`base_chain.chain_of`, the full backup first) is unpacked into a scratch directory beside PGDATA:
1. before anything is unpacked, every member's manifest must be whole (its own SHA-256 checksum) and
   its base tar present, so a damaged or half-deleted member stops the restore at once;
2. every member is checked with `pg_verifybackup --no-parse-wal` (every file against the manifest's
   checksums). With PostgreSQL 18 tools it reads the tar files as stored, in a process of its own
   while this one unpacks (the two passes overlap on two cores instead of following each other);
   older tools read plain format only, and a tar compressed with lz4 or zstd may be beyond the
   build (`_tar_verifiable`), so such a member is checked once unpacked. Either way every check has
   passed before pg_combinebackup reads a byte, and the first failure stops the restore;
3. the newest member is unpacked whole (its WAL too); of an older member checked as stored, only
   what pg_combinebackup reads (`_needed_files`): its backup_label and pg_control, and the relation
   files it walks back through for every file the newest has as INCREMENTAL. A small file the same
   as in the member before is a hard link to it (`tar_stream.extract(link_same=...)`). Creating and
   deleting files costs more than their bytes for the many small ones of a chain;
4. `pg_combinebackup --no-manifest` writes the combined data directory into PGDATA (a data directory
   to start needs no manifest). With PostgreSQL 18 tools it runs with `--link`: a file unchanged
   since an input is linked, not copied. Its inputs are only the scratch copies unpacked here (never
   the stored backups nor a downloaded repository copy), on PGDATA's filesystem and removed
   afterwards, so the links are the only names left and nothing that must stay intact shares an
   inode with the result.
The scratch directory is removed whatever happens. Nothing here starts a server, so a broken chain is
refused before any replay.

Tablespaces: pg_combinebackup follows pg_tblspc links of plain backups, which tar backups do not
have; a chain with tablespaces is refused with a clear error (restore the full backup instead).
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

from pgtool.errors import BinaryNotFoundError, OperationError
from pgtool.obs.logging import get_logger
from pgtool.pg.binaries import PgBinaries
from pgtool.physical import base_unpack, base_verify
from pgtool.physical.base_catalog import MANIFEST_FILE, BaseBackupInfo
from pgtool.physical.tar_stream import compression_of, extract, tar_stem

INCREMENTAL = "INCREMENTAL."
VERIFY_HINT = "the chain cannot be restored; restore an older complete chain (--backup)"


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
    manifests = [_check_present(member) for member in chain]
    base_unpack.ensure_empty_dir(pgdata)
    parent = Path(scratch_parent) if scratch_parent is not None else pgdata.parent
    work = Path(tempfile.mkdtemp(prefix=".pgtool-combine-", dir=parent))
    by_tar = [_tar_verifiable(member, tools) for member in chain]
    # A member checked once unpacked must be unpacked whole: pg_verifybackup misses no file.
    needed = [n if t else None for n, t in zip(_needed_files(manifests), by_tar, strict=True)]
    verifier = _Verifier(tools)
    try:
        # The small incrementals first: a damaged one is named without waiting for the full's pass.
        for member in reversed([m for m, t in zip(chain, by_tar, strict=True) if t]):
            assert member.path is not None
            verifier.submit(member, member.path)
        plain: list[Path] = []
        for member, wanted, tar in zip(chain, needed, by_tar, strict=True):
            verifier.check()  # stop unpacking at the first member that failed
            earlier = plain[-1] if plain else None
            plain.append(_unpack_plain(member, work / member.id, wanted, earlier, wal=member is chain[-1]))
            if not tar:
                verifier.submit(member, plain[-1])
        verifier.wait()
        from pgtool.pg import command

        link = ["--link"] if tools.major >= 18 else []
        log.info("combining the chain", members=[m.id for m in chain])
        command.run(
            [tools.path("pg_combinebackup"), *link, "--no-manifest", "--output", str(pgdata)]
            + [str(p) for p in plain],
            what="pg_combinebackup",
            log_stderr_level="debug",  # --link always warns that the inputs share the output's files
        )
    finally:
        verifier.stop()
        shutil.rmtree(work, ignore_errors=True)
    result = base_unpack.Unpacked(pgdata=pgdata, bytes_written=_du(pgdata))
    base_unpack.finish(pgdata, result)
    log.info("incremental chain restored", bytes=result.bytes_written)
    return result


def _check_present(member: BaseBackupInfo) -> dict[str, Any]:
    """The cheap checks first: a whole manifest (returned) and a base tar (OperationError naming
    the member)."""
    if member.path is None or not member.path.is_dir():
        raise OperationError(f"base backup {member.id} of the chain is not readable here")
    try:
        manifest = base_verify.read_manifest(member.path)
    except OperationError as exc:
        raise OperationError(f"base backup {member.id} of the chain is damaged: {exc.message}") from None
    if not any(tar_stem(p.name) == "base" for p in member.path.iterdir()):
        raise OperationError(f"base backup {member.id} of the chain has no base.tar: it is damaged")
    return manifest


def _tar_verifiable(member: BaseBackupInfo, tools: PgBinaries) -> bool:
    """Whether `tools`' pg_verifybackup reads this member's tars as stored: PostgreSQL 18 or newer, and
    tars uncompressed or gzip (every build has zlib; lz4 and zstd are build options, which the
    embedded PostgreSQL lacks: such a member is checked once unpacked instead)."""
    assert member.path is not None
    kinds = {compression_of(p.name) for p in member.path.iterdir() if tar_stem(p.name) is not None}
    return tools.major >= 18 and kinds <= {"none", "gzip"}


def _manifest_paths(manifest: dict[str, Any]) -> set[str]:
    paths = set()
    for entry in manifest.get("Files", []):
        if "Path" in entry:
            paths.add(str(entry["Path"]))
        elif "Encoded-Path" in entry:  # a name that is not UTF-8: hex of its bytes
            paths.add(os.fsdecode(bytes.fromhex(entry["Encoded-Path"])))
    return paths


def _needed_files(manifests: list[dict[str, Any]]) -> list[set[str] | None]:
    """For each member (oldest first), the files pg_combinebackup reads from it; None: all of them.

    It reads the newest member whole; from each older one its backup_label and global/pg_control
    (chain and system checks) and, for every file the newest holds as `INCREMENTAL.<name>` in a
    relation directory, the version it walks back through: `<name>` (a full copy: the walk for that
    file stops there) or `INCREMENTAL.<name>` (src/bin/pg_combinebackup/reconstruct.c,
    reconstruct_from_incremental_file). A file it would miss makes it fail naming the file, so an
    error here cannot produce a wrong data directory.
    """
    walking = set()
    for path in _manifest_paths(manifests[-1]):
        folder, _, name = path.rpartition("/")
        relations = folder.startswith(("base/", "pg_tblspc/")) or folder == "global"
        if relations and name.startswith(INCREMENTAL):
            walking.add((folder, name.removeprefix(INCREMENTAL)))
    needed: list[set[str] | None] = [None]
    for manifest in reversed(manifests[:-1]):
        present = _manifest_paths(manifest)
        take = {"backup_label", "global/pg_control"}
        full = set()
        for folder, name in walking:
            if f"{folder}/{name}" in present:
                take.add(f"{folder}/{name}")
                full.add((folder, name))
            else:
                take.add(f"{folder}/{INCREMENTAL}{name}")
        walking -= full
        needed.append(take)
    needed.reverse()
    return needed


def _unpack_plain(
    member: BaseBackupInfo, target: Path, wanted: set[str] | None, earlier: Path | None, *, wal: bool
) -> Path:
    """Unpack one member (only the files in `wanted`, if given) as a plain-format backup in `target`;
    a small file the same as in `earlier` (the member before, unpacked) is a hard link to it."""
    assert member.path is not None
    target.mkdir(mode=0o700)
    tars = {stem: p for p in sorted(member.path.iterdir()) if (stem := tar_stem(p.name)) is not None}
    try:
        extract(tars["base"], target, wanted, link_same=earlier)
        (target / "pg_wal").mkdir(mode=0o700, exist_ok=True)
        if wal and "pg_wal" in tars:
            extract(tars["pg_wal"], target / "pg_wal")
    except (OSError, ValueError, OperationError) as exc:
        raise OperationError(f"base backup {member.id} of the chain cannot be unpacked: {exc}") from None
    shutil.copyfile(member.path / MANIFEST_FILE, target / MANIFEST_FILE)
    return target


class _Verifier:
    """pg_verifybackup on chain members, one after the other, from a daemon thread: the process it
    starts runs beside the unpacking. The first failure is kept; `check` and `wait` raise it."""

    def __init__(self, tools: PgBinaries) -> None:
        self._tools = tools
        self._jobs: queue.Queue[tuple[BaseBackupInfo, Path] | None] = queue.Queue()
        self._stopping = threading.Event()
        self._failure: OperationError | None = None
        self._thread = threading.Thread(target=self._run, name="pg_verifybackup", daemon=True)
        self._thread.start()

    def submit(self, member: BaseBackupInfo, where: Path) -> None:
        """Verify `member` as found in `where`: its stored directory (tar) or its unpacked copy."""
        self._jobs.put((member, where))

    def check(self) -> None:
        if self._failure is not None:
            raise self._failure

    def wait(self) -> None:
        """Every submitted member verified; raises the first failure."""
        self._jobs.put(None)
        self._thread.join()
        self.check()

    def stop(self) -> None:
        """Abandon what is left (the restore failed elsewhere): a running check is stopped."""
        self._stopping.set()
        self._jobs.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            if self._failure is None and not self._stopping.is_set():
                try:
                    self._verify(*job)
                except OperationError as exc:
                    self._failure = exc
                except Exception as exc:  # e.g. the binary vanished: still a refusal, never a hang
                    self._failure = OperationError(f"base backup {job[0].id} of the chain: {exc}")

    def _verify(self, member: BaseBackupInfo, where: Path) -> None:
        from pgtool.pg import command

        argv = [self._tools.path("pg_verifybackup"), "--no-parse-wal", "--quiet"]
        if where == member.path:
            # Beside the tars and the manifest, a stored backup holds pgtool's own files (its record):
            # not part of the backup, and pg_verifybackup refuses any file it does not expect there.
            others = sorted(
                p.name for p in where.iterdir() if p.name != MANIFEST_FILE and not tar_stem(p.name)
            )
            argv += ["--format", "tar", *(a for name in others for a in ("--ignore", name))]
        # stderr to a file, not a pipe: polled, not pumped, so a stop can end the check at once.
        with tempfile.TemporaryFile() as err:
            proc = command.start([*argv, str(where)], what="pg_verifybackup", stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip
            while True:
                try:
                    code = proc.wait(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    if self._stopping.is_set():
                        command.stop(proc)
                        return
            if code != 0:
                err.seek(0)
                lines = err.read().decode("utf-8", "replace").strip().splitlines()
                raise OperationError(
                    f"base backup {member.id} of the chain fails pg_verifybackup: "
                    + ("\n".join(lines[-20:]) or f"exit {code}"),
                    hint=VERIFY_HINT,
                )
        kind = "tar" if where == member.path else "plain"
        get_logger().debug("member verified", backup=member.id, format=kind)


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
