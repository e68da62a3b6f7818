"""Recovery settings for a restored data directory: signal file, restore_command, target, no archiving.

Settings go to `postgresql.auto.conf`, which PostgreSQL reads last. Any earlier line for a key pgtool
sets is removed first (a base backup of a production server carries its `archive_command`, a backup of
a standby its `primary_conninfo`: a PITR copy must neither archive into production nor stream from it).
pgtool's block goes before the marker of `pgtool.pg.cluster.LocalCluster`, whose own block (port,
socket) is rewritten on every start.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from pgtool import wal_bundle
from pgtool.pg.cluster import SETTINGS_MARK, quote_setting
from pgtool.pg.privileges import give_to_server
from pgtool.recovery.wal_source import RepoArchive, WalArchive, as_archive
from pgtool.wal.repo_prefetch import SPOOL_DIR

BLOCK_MARK = "# pgtool recover settings"
TARGET_KINDS = ("time", "lsn", "xid", "name", "immediate")
MANAGED_KEYS = (
    "restore_command",
    "recovery_end_command",
    "archive_mode",
    "archive_command",
    "archive_library",
    "recovery_target",
    "recovery_target_time",
    "recovery_target_lsn",
    "recovery_target_xid",
    "recovery_target_name",
    "recovery_target_action",
    "recovery_target_timeline",
    "recovery_target_inclusive",
    "primary_conninfo",
    "primary_slot_name",
)


@dataclass(frozen=True)
class RecoveryTarget:
    """Where recovery stops: kind is one of TARGET_KINDS; value is what PostgreSQL's setting gets."""

    kind: str
    value: str = ""

    def settings(self) -> dict[str, str]:
        if self.kind == "immediate":
            return {"recovery_target": "immediate"}
        return {f"recovery_target_{self.kind}": self.value}

    def describe(self) -> str:
        return (
            "the end of the backup (immediate)" if self.kind == "immediate" else f"{self.kind} {self.value}"
        )


def restore_command(
    archive_dir: Path, executable: str | None = None, *, allow_unverified: bool = False
) -> str:
    """`<pgtool> restore-wal %f %p --archive-dir DIR`, shell-quoted, with `%` in paths doubled.

    PostgreSQL runs restore_command through the shell after replacing %f/%p, so paths are quoted for
    the shell, and a literal % must be written %% (quoting for postgresql.conf happens later).
    """
    # The server user runs it: wal_bundle picks what it can reach (this pgtool, or python3 + the bundle).
    exe = (shlex.quote(executable) if executable else wal_bundle.server_command()).replace("%", "%%")
    archive = shlex.quote(str(Path(archive_dir).resolve())).replace("%", "%%")
    extra = " --allow-unverified" if allow_unverified else ""
    return f"{exe} restore-wal %f %p --archive-dir {archive}{extra}"


def recovery_settings(
    archive_dir: Path | WalArchive,
    *,
    target: RecoveryTarget | None = None,
    standby: bool = False,
    primary_conninfo: str | None = None,
    port: int | None = None,
    allow_unverified: bool = False,
) -> dict[str, str]:
    """The settings a recovered copy needs (see the module docstring).

    archive_dir: an archive directory, or a `wal_source` archive (a repository: `restore-wal --repo`).
    allow_unverified: restore-wal replays archived files without a checksum record (archived by a
    pgtool that did not record them), with a warning each; see docs/wal.md.
    """
    archive = as_archive(archive_dir)
    settings = {
        "restore_command": archive.restore_command(allow_unverified=allow_unverified),
        # Never archive from the copy: its WAL must not land in (or collide with) production's archive.
        "archive_mode": "off",
        "recovery_target_timeline": "latest",
    }
    if standby:
        if primary_conninfo:
            settings["primary_conninfo"] = primary_conninfo
    else:
        if target is not None:
            settings.update(target.settings())
            if target.kind in ("lsn", "time", "xid"):
                settings["recovery_target_inclusive"] = "on"  # the default, said out loud
        settings["recovery_target_action"] = "promote"
    if port is not None:
        settings["port"] = str(port)
    if isinstance(archive, RepoArchive):
        # restore-wal --repo prefetches into pg_wal/.pgtool-prefetch (pgtool.wal.repo_prefetch); once
        # recovery ends, what it fetched ahead is of no use. PostgreSQL runs this in the data directory.
        settings["recovery_end_command"] = f"rm -rf pg_wal/{SPOOL_DIR}"
    return settings


def write_recovery_config(pgdata: Path, settings: dict[str, str], *, standby: bool = False) -> Path:
    """Write `settings` into pgdata's postgresql.auto.conf and create the signal file; returns the signal."""
    auto = pgdata / "postgresql.auto.conf"
    text = auto.read_text() if auto.exists() else ""
    keys = set(MANAGED_KEYS) | set(settings)
    kept = []
    for line in text.splitlines():
        key = (
            line.split("=", 1)[0].strip().lower() if "=" in line and not line.lstrip().startswith("#") else ""
        )
        if key in keys or line.strip() == BLOCK_MARK:
            continue
        kept.append(line)
    block = [BLOCK_MARK] + [f"{k} = {quote_setting(v)}" for k, v in settings.items()]
    if SETTINGS_MARK in kept:
        at = kept.index(SETTINGS_MARK)
        kept[at:at] = block
    else:
        kept.extend(block)
    auto.write_text("\n".join(kept) + "\n")
    auto.chmod(0o600)
    give_to_server(auto)
    for name in ("recovery.signal", "standby.signal"):
        (pgdata / name).unlink(missing_ok=True)
    signal = pgdata / ("standby.signal" if standby else "recovery.signal")
    signal.write_text("")
    give_to_server(signal)
    return signal


# pg_controldata label -> the setting a hot standby (or a recovering copy) must not set lower.
_CONTROL_MINIMUMS = {
    "max_connections setting": "max_connections",
    "max_worker_processes setting": "max_worker_processes",
    "max_wal_senders setting": "max_wal_senders",
    "max_prepared_xacts setting": "max_prepared_transactions",
    "max_locks_per_xact setting": "max_locks_per_transaction",
}


def control_minimums(pg_controldata: str, pgdata: Path) -> dict[str, str]:
    """Settings recovery needs at least as high as the primary had them (from the restored pg_control).

    PostgreSQL aborts recovery ("insufficient parameter settings") when a throwaway server that
    replays production WAL runs with a lower max_connections etc. than production did.
    """
    from pgtool.pg import command

    out = command.run([pg_controldata, "-D", str(pgdata)], capture_stdout=True, what="pg_controldata").stdout
    found = {}
    for line in (out or "").splitlines():
        label, _, value = line.partition(":")
        if label.strip() in _CONTROL_MINIMUMS and value.strip().isdigit():
            found[_CONTROL_MINIMUMS[label.strip()]] = value.strip()
    return found
