"""Put a chosen base backup, full or incremental, into a new data directory (`recover`).

A full backup is unpacked (`base_unpack`); an incremental one is restored with its whole chain
(`base_combine`: every member checked with pg_verifybackup, then pg_combinebackup). From a repository
a full backup streams into PGDATA (`repo_base.stream_unpack`); a chain's members are first downloaded,
verified, into a scratch directory beside PGDATA (`repo_base.scratch_chain`), removed afterwards, since
pg_combinebackup reads backup directories on disk.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from pgtool.physical import base_combine, base_unpack
from pgtool.physical.base_catalog import BaseBackupInfo
from pgtool.recovery import repo_base

if TYPE_CHECKING:
    from pgtool.repo import Repository


def restore(
    chain: list[BaseBackupInfo],
    pgdata: Path,
    *,
    repo: Repository | None = None,
    pg_bindir: str | None = None,
) -> base_unpack.Unpacked:
    """Restore `chain` (oldest first; `base_chain.chain_of`) into the empty directory `pgdata`."""
    if repo is not None and len(chain) == 1:
        # Streamed from the store into PGDATA, no local copy; recover undoes it on failure.
        return repo_base.stream_unpack(repo, chain[0], pgdata)
    with ExitStack() as stack:
        if repo is not None:
            # Beside PGDATA: the filesystem chosen to hold the recovered copy; removed on exit.
            stack.enter_context(repo_base.scratch_chain(repo, chain, pgdata.parent))
        if len(chain) == 1:
            return base_unpack.unpack_base_backup(chain[0], pgdata)
        from pgtool.pg import binaries

        tools = binaries.find_major(chain[-1].major, pg_bindir)
        return base_combine.restore_chain(chain, pgdata, tools)
    raise AssertionError("unreachable")  # ExitStack may swallow exceptions as far as mypy knows
