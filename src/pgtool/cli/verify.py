"""`pgtool verify` (logical dumps) and `pgtool verify --base` (base backup + WAL drill)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from pgtool.cli.options import (
    ArchiveDirNoEnv,
    BackupDir,
    BaseDir,
    Dsn,
    EvidenceKeyFile,
    PgBindir,
    Pushgateway,
    Repo,
    RepoKeyFile,
    TargetDsn,
)

if TYPE_CHECKING:
    from pgtool.obs.metrics import RunReport


def verify(
    backup_dir: BackupDir = None,
    repo: Repo = None,
    repo_key_file: RepoKeyFile = None,
    dsn: Dsn = None,
    target_dsn: TargetDsn = None,
    database: Annotated[
        list[str] | None,
        typer.Option("--database", "-d", help="Verify only this database's dump (repeatable). Default: all."),
    ] = None,
    amcheck: Annotated[
        bool, typer.Option("--amcheck", help="Also check every restored btree index with amcheck.")
    ] = False,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", help="Parallel pg_restore jobs per database (1-64).")
    ] = 2,
    base: Annotated[
        bool,
        typer.Option(
            "--base",
            help="Drill the newest base backup + archived WAL (--base-dir and --archive-dir, or --repo) "
            "instead of the dumps.",
        ),
    ] = False,
    base_dir: BaseDir = None,
    archive_dir: ArchiveDirNoEnv = None,
    evidence_key_file: EvidenceKeyFile = None,
    pushgateway: Pushgateway = None,
    pg_bindir: PgBindir = None,
) -> None:
    """Prove backups restore: restore drills with row counts, pushed to Prometheus.

    For each database, the newest dump: checksum (of every file of a directory-format dump),
    pg_restore --list, a restore into a throwaway
    database, every table's row count against the manifest, and with --amcheck every btree index.
    By default the restore runs in a throwaway local cluster of verify's own (PostgreSQL server
    binaries of the dumps' major, or newer, must be installed; it is always stopped and deleted):
    the newest stored globals (roles, tablespaces) are restored into it first, each dump restores
    with its owners and grants, and the database's owner, privileges, settings and comment are
    checked against the dump's manifest. --target-dsn drills on a scratch server instead
    (pgtool_verify_<run token>_<db> databases, always dropped; no owners or grants). Production is
    never touched: --dsn is accepted for compatibility and not used. A dump that passes gets a
    .verified.json record, which backup's retention honours. Every drill, passed or failed, appends a
    hash-chained (signed with --evidence-key-file) record to <backup-dir>/.evidence or <base-dir>/.evidence
    (pgtool evidence; a record that cannot be written fails the run). With --repo, each dump is first
    downloaded (verified) into $TMPDIR, which needs room for the largest dump; the verified record and
    the evidence (evidence/dumps/) go into the repository. Exit 0 only if every database passed,
    1 naming each failure, 2 on bad arguments, 3 if the server cannot be reached.

    Example: pgtool verify --backup-dir /backups/dumps

    Example: pgtool verify --repo s3://backups/prod --target-dsn postgresql://verify@scratch-db/postgres

    Example: pgtool verify --base --repo s3://backups/prod --amcheck
    """
    from pgtool.cli.options import base_and_archive, one_place, settings
    from pgtool.cli.runner import run_command, run_with_binaries

    cfg = settings(dsn, pushgateway, pg_bindir)

    if base:

        def base_body(report: RunReport) -> None:
            from pgtool.errors import UsageError

            if backup_dir is not None or database:
                raise UsageError(
                    "--base drills base backups: use --repo or --base-dir/--archive-dir, "
                    "not --backup-dir/--database"
                )
            base_and_archive("verify --base", base_dir, archive_dir, repo)
            drill: dict[str, Any] = dict(
                pg_bindir=cfg.pg_bindir, amcheck=amcheck, report=report, key_file=evidence_key_file
            )
            if repo is not None:
                from pgtool.evidence.repo_base import verify_base_repo

                typer.echo(verify_base_repo(repo, repo_key_file, **drill).summary())
            else:
                from pgtool.evidence.drills import verify_base

                assert base_dir is not None and archive_dir is not None
                typer.echo(verify_base(base_dir, archive_dir, **drill).summary())

        run_command("verify", base_body, pushgateway=cfg.pushgateway, metrics_job="verify-base")

    def body(report: RunReport) -> None:
        from pgtool.errors import FindingsError, UsageError
        from pgtool.evidence.drills import verify_dumps
        from pgtool.logical.drill_server import drill_target
        from pgtool.logical.dumps import display

        if base_dir is not None or archive_dir is not None:
            also = " (--archive-dir may come from $PGTOOL_ARCHIVE_DIR)" if archive_dir is not None else ""
            raise UsageError(f"--base-dir/--archive-dir need --base{also}")
        one_place(
            "verify", "--backup-dir", backup_dir, repo, " (or --base with --base-dir and --archive-dir)"
        )
        if target_dsn is not None:
            from pgtool.config import redact_dsn
            from pgtool.pg.conninfo import check

            check(target_dsn)
            if redact_dsn(target_dsn) != target_dsn:
                from pgtool.obs.logging import get_logger

                get_logger().warning(
                    "a password was passed with --target-dsn, where any local user can read it (ps)",
                    hint="pass it through PGTOOL_VERIFY_TARGET_DSN, PGPASSWORD or ~/.pgpass",
                )
        elif dsn is not None:
            from pgtool.obs.logging import get_logger

            get_logger().info(
                "--dsn is not used: the drill runs in a throwaway local cluster of its own",
                hint="--target-dsn names a scratch server to drill on instead",
            )
        where: dict[str, Any] = dict(databases=database or [], jobs=jobs, pg_bindir=cfg.pg_bindir)
        run: dict[str, Any] = dict(
            databases=database or [],
            amcheck=amcheck,
            jobs=jobs,
            pg_bindir=cfg.pg_bindir,
            report=report,
            key_file=evidence_key_file,
        )
        if repo is not None:
            from pgtool.evidence import repo_drills
            from pgtool.repo import open_repository

            store = open_repository(repo, key_file=repo_key_file)
            with drill_target(target_dsn, repo=store, **where) as server:
                results = repo_drills.verify_dumps(server, store, **run)
        else:
            assert backup_dir is not None
            with drill_target(target_dsn, backup_dir=backup_dir, **where) as server:
                results = verify_dumps(server, backup_dir, **run)
        for r in results:
            if r.ok:
                checked = f"  {r.indexes_checked} indexes amchecked" if amcheck else ""
                checked += "  owner, privileges and settings as recorded" if r.properties_checked else ""
                typer.echo(
                    f"ok      {display(r.database)}  {display(r.location or str(r.dump))}  "
                    f"{r.tables} tables  "
                    f"{r.rows} rows  restored in {r.restore_seconds:.1f}s{checked}"
                )
            else:
                typer.echo(f"FAILED  {display(r.database)}  {display(r.error or '')}")
        failed = [r for r in results if not r.ok]
        if failed:
            names = "; ".join(f"{display(r.database)}: {r.error}" for r in failed)
            raise FindingsError(f"verification failed for {len(failed)} of {len(results)} databases: {names}")

    run_with_binaries("verify", body, cfg)
