"""`pgtool fetch list|dump|globals`: copy verified backups out of a repository for pg_restore and psql."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pgtool.cli.options import Repo, RepoKeyFile, choice_argument, optional

if TYPE_CHECKING:
    from pgtool.obs.metrics import RunReport


class FetchWhat(StrEnum):
    list = "list"
    dump = "dump"
    globals = "globals"


def fetch(
    what: Annotated[
        FetchWhat,
        choice_argument("list the databases with a dump, fetch one database's dump, or fetch the globals."),
    ],
    repo: Repo = None,
    repo_key_file: RepoKeyFile = None,
    database: Annotated[
        str | None,
        optional("--database", "-d", help="With dump: the database (its real name, as the server has it)."),
    ] = None,
    stamp: Annotated[
        str | None,
        optional("--stamp", help="With dump or globals: this backup's UTC stamp instead of the newest."),
    ] = None,
    to: Annotated[
        Path | None,
        optional("--to", help="With dump or globals: the local file to write (0600; must not exist)."),
    ] = None,
) -> None:
    """Copy a dump or the global objects out of the backup repository into a local file, verified.

    list prints one line per database that has a complete dump: its name as the repository stores
    it, bytes outside [A-Za-z0-9_-] as %XX (safe in a shell; the recovery runbook decodes it).
    dump writes the newest complete dump of --database (or --stamp's) to --to, for pg_restore; its
    checksum (or, encrypted, its authentication) and the sha256 its manifest recorded are checked
    before the file is in place. globals writes the newest pg_dumpall --globals-only script (roles,
    memberships, tablespaces) stored by pgtool backup --repo. A file that fails a check is removed.
    Exit 0 when fetched, 1 if there is nothing to fetch or a check fails, 2 on bad arguments.

    Example: pgtool fetch list --repo s3://backups/prod --repo-key-file /secrets/repo.key

    Example: pgtool fetch dump --repo s3://backups/prod --database shop --to /scratch/shop.dump

    Example: pgtool fetch globals --repo s3://backups/prod --to /scratch/globals.sql
    """
    from pgtool.cli.runner import run_command

    def body(_report: RunReport) -> None:
        from pgtool.errors import UsageError
        from pgtool.logical import fetch as capability
        from pgtool.logical.dumps import display
        from pgtool.repo import open_repository

        if repo is None:
            raise UsageError("fetch needs --repo (or $PGTOOL_REPO)")
        if what is FetchWhat.list:
            if database is not None or stamp is not None or to is not None:
                raise UsageError("fetch list takes no --database, --stamp or --to")
        elif to is None:
            raise UsageError(f"fetch {what.value} needs --to FILE")
        if (what is FetchWhat.dump) != (database is not None):
            raise UsageError("--database goes with fetch dump, and fetch dump needs it")
        store = open_repository(repo, key_file=repo_key_file)
        if what is FetchWhat.list:
            for line in capability.listing(store):
                typer.echo(line)
            return
        assert to is not None
        if what is FetchWhat.dump:
            assert database is not None
            got = capability.fetch_dump(store, database, to, stamp=stamp)
        else:
            got = capability.fetch_globals(store, to, stamp=stamp)
        name = f"  {display(got.database)}" if got.database is not None else ""
        typer.echo(
            f"ok      {got.what}{name}  {got.stamp}  {display(got.source)} -> {display(str(got.dest))}  "
            f"{got.size_bytes} bytes"
        )

    run_command("fetch", body)
