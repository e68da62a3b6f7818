"""`pgtool check`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from pgtool.cli.options import FORMAT, ArchiveDir, Dsn, Pushgateway, Repo, RepoKeyFile, TextFormat

if TYPE_CHECKING:
    from pgtool.obs.metrics import RunReport


def check(
    dsn: Dsn = None,
    repo: Repo = None,
    repo_key_file: RepoKeyFile = None,
    archive_dir: ArchiveDir = None,
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=1, help="Seconds to wait for the switched WAL segment to be archived."),
    ] = 60.0,
    output_format: Annotated[TextFormat, FORMAT] = TextFormat.text,
    pushgateway: Pushgateway = None,
) -> None:
    """Prove WAL archiving works end to end, and that the setup around it is right.

    Repository (or archive directory): reachable, record and key, a probe written, read back, deleted.

    Server: archive_mode, wal_level, archive_command (archive-wal to this archive?), archive_timeout.

    System identifier: the archive's against the server's.

    End to end: a restore point, pg_switch_wal(), then wait (--timeout) until that segment is archived.

    The segment must read back verified; pg_stat_archiver's failures are quoted when it does not arrive.

    One line per check: ok, warning, or problem with its fix.

    Needs a superuser, or EXECUTE on pg_create_restore_point(text) and pg_switch_wal().

    Exit 0 all passed (warnings allowed), 1 a problem found, 2 bad usage, 3 server unreachable.

    Example: pgtool check --dsn postgresql://postgres@db/postgres --repo s3://backups/prod

    Example: pgtool check --archive-dir /wal-archive --timeout 120 --format json
    """
    from pgtool.cli.runner import run_command

    def body(report: RunReport) -> int:
        import sys

        from pgtool.cli.options import settings
        from pgtool.wal_check import CheckRequest, run_check
        from pgtool.wal_check.model import render_json, render_text

        cfg = settings(dsn)
        request = CheckRequest(
            dsn=cfg.dsn,
            repo=repo or None,
            repo_key_file=repo_key_file or None,
            archive_dir=str(archive_dir) if archive_dir else None,
            timeout=timeout,
        )
        result = run_check(request, report)
        if output_format is TextFormat.json:
            sys.stdout.write(render_json(result))
        else:
            sys.stdout.write(render_text(result))
        return 0 if result.ok else 1

    run_command("check", body, pushgateway=pushgateway)
