"""`pgtool recover`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pgtool.cli.options import ArchiveDir, BaseDir, PgBindir, PrimaryConninfo, Repo, RepoKeyFile


def recover(
    pgdata: Annotated[
        Path, typer.Option("--pgdata", help="New (empty or missing) data directory to prepare.")
    ],
    repo: Repo = None,
    repo_key_file: RepoKeyFile = None,
    base_dir: BaseDir = None,
    archive_dir: ArchiveDir = None,
    target_time: Annotated[
        str | None,
        typer.Option("--target-time", help="ISO 8601 time with an offset: 2026-11-24T16:30:00+00:00."),
    ] = None,
    target_lsn: Annotated[str | None, typer.Option("--target-lsn", help="An LSN such as 0/3000028.")] = None,
    target_xid: Annotated[str | None, typer.Option("--target-xid", help="A transaction id.")] = None,
    target_name: Annotated[
        str | None, typer.Option("--target-name", help="A restore point (pg_create_restore_point).")
    ] = None,
    target_immediate: Annotated[
        bool, typer.Option("--target-immediate", help="Stop as soon as the backup is consistent.")
    ] = False,
    standby: Annotated[
        bool,
        typer.Option("--standby", help="Prepare a streaming standby instead (needs --primary-conninfo)."),
    ] = False,
    primary_conninfo: PrimaryConninfo = None,
    port: Annotated[
        int | None, typer.Option("--port", help="Port for the recovered server (default: the backup's).")
    ] = None,
    backup: Annotated[
        str | None,
        typer.Option("--backup", help="Use this base backup (its timestamp name) instead of choosing."),
    ] = None,
    allow_unverified_wal: Annotated[
        bool,
        typer.Option(
            "--allow-unverified-wal",
            help="Replay archived WAL files that have no checksum record (archived by a pgtool that did "
            "not record them), with a warning each. Without it restore-wal refuses them.",
        ),
    ] = False,
    pg_bindir: PgBindir = None,
) -> None:
    """Prepare a data directory for point-in-time recovery or as a standby; print the start command.

    Reads base backups and WAL from a repository (--repo) or from --base-dir and --archive-dir.
    Picks the newest base backup that finished before the target, checks the WAL archive has no gap
    up to the target, unpacks the backup (from a repository: streamed into --pgdata, every object
    verified as it is read, --pgdata emptied again if any fails; an incremental backup with its whole
    chain, downloaded and verified into a scratch directory beside --pgdata, every member checked with
    pg_verifybackup and combined with pg_combinebackup, a missing or damaged member refused before
    anything is started), writes recovery.signal (or standby.signal), a
    restore_command calling `pgtool restore-wal`, the target and recovery_target_action = 'promote',
    and turns archiving off in the copy. Without a target it recovers to the end of the archive. It
    does not start the server. With --repo, start it with the same AWS_* / AZURE_STORAGE_*
    environment: restore-wal --repo reads them, and no credential is written into the copy.

    Example: pgtool recover --repo s3://backups/prod --pgdata /srv/pitr \\
    --target-time 2026-11-24T16:30:00+00:00
    """
    from pgtool.cli.options import base_and_archive
    from pgtool.cli.runner import run_command

    def body(_report: object) -> None:
        from pgtool.recovery.recover import build_target, prepare_recovery

        base_and_archive("recover", base_dir, archive_dir, repo)
        store = None
        if repo is not None:
            from pgtool.repo import open_repository

            store = open_repository(repo, key_file=repo_key_file)
        target = build_target(
            time=target_time, lsn=target_lsn, xid=target_xid, name=target_name, immediate=target_immediate
        )
        result = prepare_recovery(
            base_dir,
            archive_dir,
            pgdata,
            target=target,
            standby=standby,
            primary_conninfo=primary_conninfo,
            port=port,
            backup_id=backup,
            pg_bindir=pg_bindir,
            allow_unverified_wal=allow_unverified_wal,
            repo=store,
            repo_key_file=repo_key_file,
        )
        what = (
            "standby"
            if standby
            else f"recovery to {target.describe() if target else 'the end of the archive'}"
        )
        typer.echo(f"prepared {result.pgdata} from base backup {result.backup.id} for {what}")
        if result.continuity is not None:
            typer.echo(
                f"WAL archive checked: {result.continuity.first_segment}..{result.continuity.last_segment} "
                f"(timeline {result.continuity.timeline})"
            )
        if result.end_of_archive:
            typer.echo(
                f"recovery target: LSN {result.end_of_archive}, the last complete record archived "
                "(PostgreSQL stops with an error instead of promoting if WAL before it is missing)"
            )
        for note in result.notes:
            typer.echo(f"note: {note}")
        typer.echo("start it with:")
        typer.echo(f"  {result.start_command}")

    run_command("recover", body)
