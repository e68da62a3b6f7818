"""`pgtool archive-module`."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

from pgtool.cli.options import PgBindir, Repo, optional


def archive_module(
    output: Annotated[
        Path | None,
        optional(
            "--output",
            help="Directory to install pgtool_archive.so into (default: the server's pg_config --pkglibdir).",
        ),
    ] = None,
    include_dir: Annotated[
        Path | None,
        optional(
            "--include-dir",
            help="The server's headers (default: pg_config --includedir-server; Debian: "
            "postgresql-server-dev-N).",
        ),
    ] = None,
    repo: Repo = None,
    pg_bindir: PgBindir = None,
) -> None:
    """Build pgtool's archive module for a PostgreSQL server and print the settings that load it.

    With archive_library = pgtool_archive, the archiver asks archive-wal's uploader (running ahead
    into an S3 or Azure repository) whether a segment is stored, instead of starting a process per
    segment; it runs pgtool_archive.command, an ordinary archive-wal command, for any segment the
    uploader did not confirm. Needs a C compiler and the server's headers. See docs/wal.md.

    Example: pgtool archive-module --pg-bindir /usr/lib/postgresql/15/bin --repo s3://backups/main
    """
    from pgtool.cli.runner import run_command

    def body(_report: object) -> int:
        from pgtool.errors import BinaryNotFoundError
        from pgtool.pg.binaries import find, pgtool_executable
        from pgtool.wal.module import build, settings

        binaries = find(pg_bindir)
        built = build(binaries.path("pg_config"), output_dir=output, include_dir=include_dir)
        try:
            words = [pgtool_executable()]  # what archive_command names elsewhere in pgtool
        except BinaryNotFoundError:
            words = [sys.executable, "-m", "pgtool"]
        # Shell-quoted, then % doubled: PostgreSQL expands %p, %f and %% before the shell reads it.
        quoted = [shlex.quote(w).replace("%", "%%") for w in words]
        target = shlex.quote(repo or "s3://BUCKET/PREFIX").replace("%", "%%")
        command = " ".join([*quoted, "archive-wal", "%p", "%f", "--repo", target])
        print(f"# PostgreSQL {built.major}: {built.path}")
        print(settings(built, command), end="")
        return 0

    run_command("archive-module", body)
