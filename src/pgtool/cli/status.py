"""`pgtool status`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from pgtool.cli.options import (
    FORMAT,
    ArchiveDirNoEnv,
    BackupDir,
    BaseDir,
    Dsn,
    K8sMode,
    PoolerDsn,
    Repo,
    RepoKeyFile,
    TextFormat,
    choice,
    optional,
    pushgateway_option,
)

if TYPE_CHECKING:
    from pgtool.obs.metrics import RunReport


def limit(help: str) -> Any:
    """A threshold: a duration (90s, 15m, 26h, 8d) beyond which status reports a problem.

    The flag comes from the parameter's name; the body parses every threshold before collecting.
    """
    return typer.Option(help=help)


READ_PUSHGATEWAY = "Pushgateway to read the last pgtool verify result from (and to --push to)."


def status(
    dsn: Dsn = None,
    backup_dir: BackupDir = None,
    archive_dir: ArchiveDirNoEnv = None,
    base_dir: BaseDir = None,
    repo: Repo = None,
    repo_key_file: RepoKeyFile = None,
    pooler_dsn: PoolerDsn = None,
    pushgateway: Annotated[str | None, pushgateway_option(READ_PUSHGATEWAY)] = None,
    push: Annotated[
        bool,
        typer.Option(
            "--push",
            help="Also push this run's RPO, archive backlog and archiver failures to --pushgateway "
            "(job pgtool-status).",
        ),
    ] = False,
    output_format: Annotated[TextFormat, FORMAT] = TextFormat.text,
    exclude_database: Annotated[
        list[str] | None,
        optional("--exclude-database", help="A database pgtool backup does not dump (repeatable)."),
    ] = None,
    max_dump_age: Annotated[str, limit("Newest dump older: a problem.")] = "26h",
    max_base_age: Annotated[str, limit("Newest base backup older: a problem.")] = "8d",
    max_verify_age: Annotated[str, limit("Last successful verify older: a problem.")] = "8d",
    max_archive_lag: Annotated[str, limit("A WAL segment waiting longer to be archived: a problem.")] = "15m",
    max_rpo: Annotated[str, limit("RPO (now - the newest segment's archive time) above: a problem.")] = "15m",
    max_replication_lag: Annotated[str, limit("A replica's replay lag above this: a problem.")] = "5m",
    max_xact_age: Annotated[str, limit("A transaction open longer: a problem.")] = "15m",
    max_pool_wait: Annotated[str, limit("PgBouncer clients waiting longer for a server: a problem.")] = "5s",
    k8s: Annotated[
        K8sMode,
        choice(
            "--k8s",
            help="Read pgtool's CronJobs: auto (with the k8s extra and a cluster or kubeconfig), on, off.",
        ),
    ] = K8sMode.auto,
    k8s_namespace: Annotated[
        str | None,
        optional("--k8s-namespace", help="Namespace of the CronJobs (default: the pod's, else default)."),
    ] = None,
) -> None:
    """Is the database recoverable right now? One screen: server, archiver, dumps, base backups.

    Also WAL continuity, the recoverable window, last verify, replication, long transactions, PgBouncer.

    Each problem is one line with what to do.

    RPO: now - when the newest archived WAL segment was archived, with the backlog not archived.

    Exit 0 when healthy, 1 when something needs attention, 3 when the server cannot be reached.

    Example: pgtool status --dsn postgresql://monitor@db/postgres --backup-dir /backups/dumps

    Example: pgtool status --base-dir /backups/base --archive-dir /backups/wal --format json

    Example: pgtool status --repo s3://backups/prod --repo-key-file /secrets/repo.key
    """
    from pgtool.cli.runner import run_command

    def body(run_report: RunReport) -> int:
        import sys

        from pgtool.cli.options import settings
        from pgtool.errors import UsageError
        from pgtool.status.collect import StatusRequest, collect_status
        from pgtool.status.durations import parse_duration
        from pgtool.status.model import Thresholds
        from pgtool.status.render import render_json, render_text

        def seconds(flag: str, value: str) -> float:
            try:
                return parse_duration(value)
            except ValueError as exc:
                raise UsageError(f"{flag}: {exc}") from None

        thresholds = Thresholds(
            max_dump_age=seconds("--max-dump-age", max_dump_age),
            max_base_age=seconds("--max-base-age", max_base_age),
            max_verify_age=seconds("--max-verify-age", max_verify_age),
            max_archive_lag=seconds("--max-archive-lag", max_archive_lag),
            max_rpo=seconds("--max-rpo", max_rpo),
            max_replication_lag=seconds("--max-replication-lag", max_replication_lag),
            max_xact_age=seconds("--max-xact-age", max_xact_age),
            max_pool_wait=seconds("--max-pool-wait", max_pool_wait),
        )
        if push and not pushgateway:
            raise UsageError("--push needs --pushgateway (or PGTOOL_PUSHGATEWAY_URL)")
        if repo is not None and (archive_dir is not None or base_dir is not None):
            raise UsageError(
                "--repo replaces --archive-dir and --base-dir: pass one or the other"
                " (--repo may come from $PGTOOL_REPO, --archive-dir from $PGTOOL_ARCHIVE_DIR)"
            )
        cfg = settings(dsn)
        request = StatusRequest(
            dsn=cfg.dsn,
            backup_dir=backup_dir,
            archive_dir=archive_dir,
            base_dir=base_dir,
            repo=repo,
            repo_key_file=repo_key_file,
            pooler_dsn=pooler_dsn,
            pushgateway=pushgateway,
            exclude_databases=list(exclude_database or []),
            k8s=k8s.value,
            k8s_namespace=k8s_namespace,
            thresholds=thresholds,
        )
        report = collect_status(request, run_report)
        if output_format is TextFormat.json:
            sys.stdout.write(render_json(report))
        else:
            sys.stdout.write(render_text(report, target=cfg.safe_dsn))
        return 0 if report.healthy else 1

    # --pushgateway alone is where to read verify results from; the run itself is pushed only with --push.
    run_command("status", body, pushgateway=pushgateway if push else None)
