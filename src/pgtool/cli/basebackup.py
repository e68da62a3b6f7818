"""`pgtool basebackup`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pgtool.cli.options import BaseCompress, Dsn, PgBindir, Pushgateway, Repo, RepoKeyFile, optional

if TYPE_CHECKING:
    from pgtool.obs.metrics import RunReport


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
            help="With --repo: where the backup is written and checked before the upload, then removed "
            "(default: $TMPDIR or /tmp). Needs room for one backup.",
        ),
    ] = None,
    dsn: Dsn = None,
    keep: Annotated[int, typer.Option("--keep", help="Complete base backups to keep (at least 1).")] = 4,
    archive_dir: Annotated[
        Path | None,
        optional(
            "--archive-dir",
            envvar="PGTOOL_ARCHIVE_DIR",
            help="WAL archive to prune: WAL older than the second-newest kept backup needs is removed "
            "(never .history files).",
        ),
    ] = None,
    compress: Annotated[
        BaseCompress,
        typer.Option(
            "--compress",
            help="auto: server-side lz4, else zstd, else none; gzip compresses on the client.",
            case_sensitive=False,
        ),
    ] = BaseCompress.auto,
    pushgateway: Pushgateway = None,
    pg_bindir: PgBindir = None,
) -> None:
    """Take a pg_basebackup (tar, WAL included) into DEST/<UTC timestamp>/ or a repository, check it,
    apply retention.

    The backup is written under a temporary name and renamed only once pg_basebackup succeeded and the
    result was checked against its manifest. Metadata (LSNs, times, timeline, system identifier,
    sizes) goes to pgtool-basebackup.json inside it. With --repo it is written and checked in a
    spool directory, uploaded to base/<stamp>/ (metadata last), and the spool removed; retention and
    WAL pruning then run on the repository.

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
        if repo is not None:
            from pgtool.physical.repo_basebackup import take_repo_base_backup

            result = take_repo_base_backup(
                cfg.dsn,
                repo,
                key_file=repo_key_file,
                keep=keep,
                compress=compress.value,
                spool_dir=spool_dir,
                pg_bindir=cfg.pg_bindir,
                report=report,
            )
        else:
            from pgtool.physical.basebackup import take_base_backup

            assert dest is not None
            result = take_base_backup(
                cfg.dsn,
                dest,
                keep=keep,
                archive_dir=archive_dir,
                compress=compress.value,
                pg_bindir=cfg.pg_bindir,
                report=report,
            )
        info = result.backup
        typer.echo(
            f"base backup {info.id}: {info.size_bytes} bytes, {info.compression}, "
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
