"""Where the demo keeps WAL, base backups and dumps: one local backup repository, encrypted at rest.

The repository is `<work>/repo` with a generated 32-byte key file `<work>/repo.key` (0600): what
production configures with `--repo s3://...` and a key from a Secret, on a local directory. Every backup
command of the demo gets the same `--repo`/`--repo-key-file`, the server's archive_command and the
recovered cluster's restore_command included.

The server user runs archive-wal/restore-wal: this installation's pgtool, or (root in a checkout under
/root) the WAL bundle with the repository packages copied beside it for the server's python3. Only when
neither can reach a repository (no python3 of this interpreter's ABI for the server user) does the demo
keep its backups in directories, and it says why.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pgtool.pg.privileges import give_to_server

KEY_BYTES = 32


@dataclass
class Storage:
    """The backup options each demo command gets, and one line saying where the backups are."""

    where: str
    wal: list[str] = field(default_factory=list)  # archive_command / restore_command
    backup: list[str] = field(default_factory=list)
    verify_dumps: list[str] = field(default_factory=list)
    basebackup: list[str] = field(default_factory=list)
    base: list[str] = field(default_factory=list)  # verify --base, recover, status
    status: list[str] = field(default_factory=list)


def server_runs_pgtool() -> bool:
    """Whether the server user's archive-wal/restore-wal can use a repository (pgtool or the bundle)."""
    from pgtool import wal_bundle

    return wal_bundle.server_runs_repository()


def prepare(work: Path) -> Storage:
    """Create the demo's repository and key (or, without a server-runnable pgtool, its directories)."""
    if not server_runs_pgtool():
        return _directories(work)
    repo, key = work / "repo", work / "repo.key"
    # The content is the secret: random bytes (keyed BLAKE2b, no Argon2 cost per archive-wal call).
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(os.urandom(KEY_BYTES))
    give_to_server(key)  # read by archive-wal/restore-wal as the server user; still 0600
    from pgtool.repo import open_repository

    # Created here, so its record and wal/ belong to the server user whatever the umask: the server
    # archives into it, the demo's own commands (run as us, or root) read and write beside.
    open_repository(str(repo), key_file=key, create=True)
    (repo / "wal").mkdir(exist_ok=True)
    give_to_server(repo, recursive=True)
    opts = ["--repo", str(repo), "--repo-key-file", str(key)]
    return Storage(
        where=f"repository {repo} (encrypted at rest, key {key.name})",
        wal=opts,
        backup=opts,
        verify_dumps=opts,
        basebackup=opts,
        base=opts,
        status=opts,
    )


def _directories(work: Path) -> Storage:
    archive, dumps, base = work / "wal-archive", work / "backups" / "dumps", work / "backups" / "base"
    for d in (archive, dumps.parent):
        d.mkdir(parents=True, exist_ok=True)
        give_to_server(d)
    return Storage(
        where=(
            f"directories under {work} (no repository: the server user can run neither this pgtool nor "
            "a python3 of its ABI, which the WAL bundle needs for the repository packages)"
        ),
        wal=["--archive-dir", str(archive)],
        backup=["--dest", str(dumps)],
        verify_dumps=["--backup-dir", str(dumps)],
        basebackup=["--dest", str(base), "--archive-dir", str(archive)],
        base=["--base-dir", str(base), "--archive-dir", str(archive)],
        status=["--backup-dir", str(dumps), "--base-dir", str(base), "--archive-dir", str(archive)],
    )
