"""`pgtool backup`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pgtool.cli.options import Dsn, PgBindir, Pushgateway, Repo, RepoKeyFile, optional

if TYPE_CHECKING:
    from pgtool.obs.metrics import RunReport

PASSWORDS_NEED_ENCRYPTION = (
    "--with-role-passwords stores password hashes: only into an encrypted repository "
    "(--repo with --repo-key-file)"
)


def backup(
    dest: Annotated[
        Path | None,
        optional("--dest", help="Backup directory; dumps go to DEST/<database>/. Or use --repo."),
    ] = None,
    repo: Repo = None,
    repo_key_file: RepoKeyFile = None,
    dsn: Dsn = None,
    database: Annotated[
        list[str] | None,
        typer.Option("--database", "-d", help="Dump only this database (repeatable). Default: all."),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", help="Skip this database (repeatable)."),
    ] = None,
    retention_days: Annotated[
        int,
        typer.Option(
            "--retention-days",
            help="Delete dumps older than this many days (the newest of each database, and the newest "
            "one verify restored, are always kept; 0 keeps everything).",
        ),
    ] = 7,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Databases dumped at the same time.")] = 1,
    dump_format: Annotated[
        str,
        typer.Option(
            "--format",
            help="custom (one file per dump) or directory (pg_dump -Fd: one file per table, "
            "needed for --jobs-per-dump).",
        ),
    ] = "custom",
    jobs_per_dump: Annotated[
        int,
        typer.Option(
            "--jobs-per-dump",
            help="pg_dump -j: tables of one database dumped at the same time (1-64; --format directory).",
        ),
    ] = 1,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait", help="If another backup holds the lock (DEST's or --repo's), wait instead of failing."
        ),
    ] = False,
    with_role_passwords: Annotated[
        bool,
        typer.Option(
            "--with-role-passwords",
            help="Store the roles' password hashes with the globals. Only into an encrypted "
            "repository (--repo with --repo-key-file).",
        ),
    ] = False,
    pushgateway: Pushgateway = None,
    pg_bindir: PgBindir = None,
) -> None:
    """Dump every database with pg_dump (custom format), with checksums, row-count manifests and retention.

    Each database goes to DEST/<database>/<database>-<UTC stamp>.dump with a .sha256 and a
    .manifest.json holding the exact row count of every table, counted in the dump's own snapshot,
    and the database's owner, privileges, settings and comment. The cluster's global objects (roles,
    memberships, tablespaces: pg_dumpall --globals-only, without password hashes unless
    --with-role-passwords) go to DEST/.globals/<UTC stamp>.sql. With --repo instead, pg_dump
    streams into the repository (dumps/<database>/<stamp>/: compressed, checksummed, encrypted
    with --repo-key-file) with no local copy, the globals to dumps/.globals/<stamp>/globals.sql;
    see docs/logical-backups.md.
    With --format directory --jobs-per-dump N, pg_dump -Fd -j N writes DEST/<database>/<database>-
    <stamp>.dir/ (a .dir.sha256 lists every file, the manifest records each one's SHA-256); with --repo
    it is spooled in $TMPDIR, then each file uploaded under dumps/<database>/<stamp>/dir/.
    Exit 0 if every database was dumped, 1 if any failed (the others are still dumped), 3 if the
    server cannot be reached.

    Example: pgtool backup --dsn postgresql://backup@db/postgres --dest /backups/dumps --jobs 2

    Example: pgtool backup --dsn postgresql://backup@db/postgres --repo s3://backups/prod
    """
    from pgtool.cli.options import one_place, settings
    from pgtool.cli.runner import run_with_binaries

    cfg = settings(dsn, pushgateway, pg_bindir)

    def body(report: RunReport) -> None:
        from pgtool.errors import OperationError, UsageError
        from pgtool.logical.dumps import display

        one_place("backup", "--dest", dest, repo)
        run: dict[str, Any] = dict(
            databases=database or [],
            exclude=exclude or [],
            retention_days=retention_days,
            jobs=jobs,
            wait=wait,
            pg_bindir=cfg.pg_bindir,
            report=report,
            with_role_passwords=with_role_passwords,
            dump_format=dump_format,
            jobs_per_dump=jobs_per_dump,
        )
        if with_role_passwords and (repo is None or repo_key_file is None):
            raise UsageError(PASSWORDS_NEED_ENCRYPTION)
        if repo is not None:
            from pgtool.logical import repo_backup
            from pgtool.repo import open_repository

            store = open_repository(repo, key_file=repo_key_file, create=True)
            if with_role_passwords and not store.encrypted:
                raise UsageError(PASSWORDS_NEED_ENCRYPTION)
            outcome = repo_backup.run_backup(cfg.dsn, store, **run)
        else:
            from pgtool.logical.dumping import run_backup

            assert dest is not None
            outcome = run_backup(cfg.dsn, dest, **run)
        for r in outcome.results:
            if r.ok:
                typer.echo(
                    f"ok      {display(r.database)}  {display(r.location or str(r.path))}  "
                    f"{r.size_bytes} bytes  "
                    f"{r.tables} tables  {r.rows} rows  {r.duration_seconds:.1f}s"
                )
            else:
                typer.echo(f"FAILED  {display(r.database)}  {display(r.error or '')}")
        if outcome.globals_location is not None:
            typer.echo(f"ok      globals  {display(outcome.globals_location)}")
        else:
            typer.echo(f"FAILED  globals  {display(outcome.globals_error or '')}")
        for path in outcome.removed:
            typer.echo(f"removed {path} (retention)")
        failed = outcome.failed
        if failed:
            names = ", ".join(f"{display(r.database)} ({r.error})" for r in failed)
            raise OperationError(
                f"backup failed for {len(failed)} of {len(outcome.results)} databases: {names}"
            )
        if outcome.globals_error is not None:
            raise OperationError(f"backup of the global objects failed: {outcome.globals_error}")

    run_with_binaries("backup", body, cfg)
