"""`pgtool bootstrap-extensions`."""

from __future__ import annotations

from typing import Annotated

from pgtool.cli.options import Dsn, optional


def bootstrap_extensions(
    database: Annotated[
        list[str] | None,
        optional(
            "--database",
            help="Bootstrap only this database (repeatable). Default: every connectable non-template one.",
        ),
    ] = None,
    password_file: Annotated[
        list[str] | None,
        optional(
            "--password-file",
            help="ROLE=PATH: read ROLE's password from PATH (repeatable). Overrides the environment "
            "variables PGTOOL_GRAFANA_READER_PASSWORD, PGTOOL_REPLICATOR_PASSWORD, "
            "PGTOOL_PGBOUNCER_AUTH_PASSWORD.",
        ),
    ] = None,
    dsn: Dsn = None,
) -> None:
    """Install pg_stat_statements everywhere and least-privilege roles.

    Checks shared_preload_libraries (pg_stat_statements, auto_explain); creates pg_stat_statements in every
    database; creates or updates grafana_reader (pg_monitor, read-only), replicator (REPLICATION only) and
    pgbouncer_auth with a pgbouncer.get_auth(username) lookup in every database for PgBouncer's auth_query.
    Passwords come from the environment or files, never the command line; they are sent as SCRAM
    verifiers. Prints what changed and what was in place; a second run changes nothing. Exit 1 if
    shared_preload_libraries still lacks a library (everything else is done).

    Example: PGTOOL_GRAFANA_READER_PASSWORD=... pgtool bootstrap-extensions --dsn "$PGTOOL_DSN"
    --password-file pgbouncer_auth=/run/secrets/pgbouncer_auth
    """
    from pgtool.cli.options import settings
    from pgtool.cli.runner import run_command

    cfg = settings(dsn)

    def body(_report: object) -> int:
        import sys

        from pgtool.schema.bootstrap import bootstrap, read_passwords

        passwords = read_passwords(password_file)
        result = bootstrap(cfg.dsn, databases=database, passwords=passwords)
        out = sys.stdout
        for scope, what in result.changed:
            print(f"changed   [{scope}] {what}", file=out)
        for scope, what in result.in_place:
            print(f"in place  [{scope}] {what}", file=out)
        for warning in result.warnings:
            print(f"warning   {warning}", file=out)
        if result.preload_missing:
            print(
                f"missing   shared_preload_libraries lacks {', '.join(result.preload_missing)}: "
                f"{result.preload_fix}",
                file=out,
            )
        print(
            f"{len(result.changed)} changed, {len(result.in_place)} already in place, "
            f"{len(result.databases)} database(s)",
            file=out,
        )
        return 1 if result.preload_missing else 0

    run_command("bootstrap-extensions", body)
