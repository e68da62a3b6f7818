"""`pgtool basebackup`."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pgtool.cli.options import (
    BaseCompress,
    Dsn,
    PgBindir,
    Pushgateway,
    Repo,
    RepoKeyFile,
    archive_dir_option,
    choice,
    optional,
)

if TYPE_CHECKING:
    from pgtool.obs.metrics import RunReport

PRUNE_ARCHIVE = (
    "WAL archive to prune: WAL older than the second-newest kept backup needs is removed "
    "(never .history files)."
)


def basebackup(
    dest: Annotated[
        Path | None,
        optional("--dest", help="Directory holding the dated base backups (or use --repo)."),
    ] = None,
    repo: Repo = None,
    repo_key_file: RepoKeyFile = None,
    spool_dir: Annotated[
        Path | None,
        optional(
            "--spool-dir",
            envvar="PGTOOL_SPOOL_DIR",
            help="With --repo, when the backup cannot stream into the store (server-side compression, "
            "extra tablespaces, WAL recycled before it was fetched): where it is written and checked "
            "before the upload, then removed (default: $TMPDIR or /tmp). Needs room for one backup then.",
        ),
    ] = None,
    dsn: Dsn = None,
    keep: Annotated[int, typer.Option("--keep", help="Complete base backups to keep (at least 1).")] = 4,
    archive_dir: Annotated[Path | None, archive_dir_option(PRUNE_ARCHIVE)] = None,
    compress: Annotated[
        BaseCompress,
        choice(
            "--compress", help="auto: server-side lz4, else zstd, else none; gzip compresses on the client."
        ),
    ] = BaseCompress.auto,
    incremental: Annotated[
        bool,
        typer.Option(
            "--incremental",
            help="PostgreSQL 17+ with summarize_wal = on: only the blocks changed since the newest backup "
            "(the first backup of a chain is full). Otherwise: one line, exit 2.",
        ),
    ] = False,
    incremental_fallback: Annotated[
        str,
        typer.Option(
            "--incremental-fallback",
            help="refuse (exit 2) or full: take a full backup when the server cannot take an incremental.",
        ),
    ] = "refuse",
    retention_window: Annotated[
        str | None,
        typer.Option(
            "--retention-window",
            help="Also keep what recovering to any moment of this window needs (14d, 36h, 2w): "
            "backups, their chains, and WAL.",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Take no backup: list what retention with these options would delete now, and why.",
        ),
    ] = False,
    pushgateway: Pushgateway = None,
    pg_bindir: PgBindir = None,
) -> None:
    """Take a pg_basebackup (tar, WAL included) into DEST/<UTC timestamp>/ or a repository, check it,
    apply retention.

    The backup is written under a temporary name and renamed only once pg_basebackup succeeded and the
    result was checked against its manifest. Metadata (LSNs, times, timeline, system identifier,
    sizes) goes to pgtool-basebackup.json inside it. With --repo it streams into base/<stamp>/ as one
    tar, every file checked against the manifest on the way, metadata last; where it cannot stream it
    is written and checked in a spool directory, uploaded, and the spool removed. Retention and WAL
    pruning then run on the repository.

    Retention never deletes a backup a kept incremental needs (whole chains are kept), and with
    --retention-window also keeps the newest backup older than the window, everything after it and
    the WAL from its start. --dry-run prints that plan without taking a backup or deleting anything.

    Example: pgtool basebackup --dsn 'host=db user=replicator' --dest /backups/base --incremental \
    --keep 2 --retention-window 14d --archive-dir /wal-archive

    Example: pgtool basebackup --dsn 'host=db user=replicator' --dest /backups/base --keep 4 \\
    --archive-dir /wal-archive

    Example: pgtool basebackup --repo s3://backups/prod --repo-key-file /secrets/repo.key --keep 4
    """
    from pgtool.cli.options import settings
    from pgtool.cli.runner import run_with_binaries

    cfg = settings(dsn, pushgateway, pg_bindir)

    def body(report: RunReport) -> None:
        from pgtool.errors import UsageError

        if (dest is None) == (repo is None):
            raise UsageError("pass exactly one of --dest DIR and --repo URL")
        if repo is not None and archive_dir is not None:
            raise UsageError("--archive-dir goes with --dest; with --repo the repository's WAL is pruned")
        from pgtool.physical.base_retention import parse_window

        window = parse_window(retention_window) if retention_window is not None else None
        if dry_run:
            _dry_run(dest, repo, repo_key_file, keep, window, archive_dir)
            return
        from pgtool.physical.backup_run import BackupRun

        run = BackupRun(
            keep=keep,
            compress=compress.value,
            pg_bindir=cfg.pg_bindir,
            report=report,
            incremental=incremental,
            fallback=incremental_fallback,
            window=window,
        )
        if repo is not None:
            from pgtool.physical.repo_basebackup import take_repo_base_backup

            result = take_repo_base_backup(
                cfg.dsn, repo, key_file=repo_key_file, spool_dir=spool_dir, run=run
            )
        else:
            from pgtool.physical.basebackup import take_base_backup

            assert dest is not None
            result = take_base_backup(cfg.dsn, dest, archive_dir=archive_dir, run=run)
        info = result.backup
        kind = f"incremental on {info.parent} (chain of {len(info.chain) + 1})" if info.parent else "full"
        typer.echo(
            f"base backup {info.id} ({kind}): {info.size_bytes} bytes, {info.compression}, "
            f"LSN {info.start_lsn}..{info.stop_lsn} (timeline {info.timeline}), "
            f"checked with {info.verified_with}"
        )
        typer.echo(f"kept {len(result.kept)}: {' '.join(result.kept)}")
        if result.deleted:
            typer.echo(f"deleted by retention: {' '.join(result.deleted)}")
        if archive_dir is not None or repo is not None:
            typer.echo(
                f"archived WAL pruned: {result.segments_pruned} segments ({len(result.wal_pruned)} files)"
            )

    run_with_binaries("basebackup", body, cfg)


def _dry_run(
    dest: Path | None,
    repo: str | None,
    key_file: str | None,
    keep: int,
    window: timedelta | None,
    archive_dir: Path | None,
) -> None:
    """Print what retention would delete, and why; delete nothing."""
    if repo is not None:
        from pgtool.physical.repo_retention import apply_repo_retention
        from pgtool.repo import open_repository

        store = open_repository(repo, key_file=key_file)
        outcome = apply_repo_retention(store, keep=keep, window=window, dry_run=True)
    else:
        from pgtool.physical.base_retention import apply_retention

        assert dest is not None
        outcome = apply_retention(dest, keep=keep, archive_dir=archive_dir, window=window, dry_run=True)
    typer.echo(f"dry run: would keep {len(outcome.kept)}: {' '.join(b.id for b in outcome.kept)}")
    for backup_id in outcome.deleted:
        typer.echo(f"would delete {backup_id}: {outcome.reasons[backup_id]}")
    if not outcome.deleted:
        typer.echo("would delete no base backup")
    if outcome.wal_boundary is not None and (archive_dir is not None or repo is not None):
        typer.echo(
            f"would prune {outcome.segments_pruned} WAL segments ({len(outcome.wal_pruned)} files) "
            f"before {outcome.wal_boundary}: {outcome.wal_reason}"
        )
