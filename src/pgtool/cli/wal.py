"""archive-wal / restore-wal as Typer commands, for `--help` and completion.

The console script never reaches these: `pgtool.cli.entry` sends both commands straight to the
stdlib-only `pgtool.wal.fastcli`, because PostgreSQL runs them once per WAL segment.
"""

from __future__ import annotations

import typer

_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}
# Read by pgtool.cli.commands.register: every argument, --help included, goes to fastcli unparsed.
CONTEXT_SETTINGS: dict[str, dict[str, object]] = {"archive_wal": _PASS_THROUGH, "restore_wal": _PASS_THROUGH}


def archive_wal(ctx: typer.Context) -> None:
    """Archive one WAL file durably (what archive_command calls).

    Example: archive_command = 'pgtool archive-wal %p %f --archive-dir /wal-archive'
    """
    from pgtool.wal.fastcli import main

    raise SystemExit(main(["archive-wal", *ctx.args]))


def restore_wal(ctx: typer.Context) -> None:
    """Restore one WAL file from the archive (what restore_command calls).

    Example: restore_command = 'pgtool restore-wal %f %p --archive-dir /wal-archive'
    """
    from pgtool.wal.fastcli import main

    raise SystemExit(main(["restore-wal", *ctx.args]))
