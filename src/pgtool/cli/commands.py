"""The command list: name, module, one-line help. `pgtool --help` shows them in this order.

A command's module under pgtool.cli defines a function named like the command (dashes become
underscores).
"""

from __future__ import annotations

import importlib

import typer

# (name, module, one-line help)
COMMANDS: list[tuple[str, str, str]] = [
    ("backup", "backup", "Dump every database with pg_dump (custom format), with checksums and retention."),
    ("basebackup", "basebackup", "Take a pg_basebackup into a dated directory, apply retention, prune WAL."),
    ("archive-wal", "wal", "Archive one WAL file durably (what archive_command calls)."),
    ("restore-wal", "wal", "Restore one WAL file from the archive (what restore_command calls)."),
    (
        "archive-module",
        "archive_module",
        "Build the archive module that confirms uploaded WAL without a process per segment.",
    ),
    ("wal-bundle", "wal_bundle", "Write archive-wal/restore-wal as one file for servers without pgtool."),
    ("verify", "verify", "Prove backups restore: restore drills with row counts, pushed to Prometheus."),
    ("evidence", "evidence", "List, show and verify the hash-chained evidence of restore drills; report."),
    ("recover", "recover", "Prepare a data directory for point-in-time recovery or as a standby."),
    ("fetch", "fetch", "Copy a verified dump or the globals out of the backup repository to a file."),
    (
        "bootstrap-extensions",
        "bootstrap_extensions",
        "Install pg_stat_statements everywhere and least-privilege roles.",
    ),
    ("partitions", "partitions", "Keep monthly range partitions created ahead, with optional retention."),
    ("refresh-mv", "refresh_mv", "Refresh materialized views concurrently, skipping ones being refreshed."),
    ("report", "report", "Reports from the materialized views: sales, turnover, top customers."),
    ("lint", "lint", "Lint SQL migrations for operationally unsafe DDL."),
    ("bench", "bench", "Benchmark query rewrites against a real PostgreSQL."),
    ("status", "status", "One screen: is the database recoverable right now? Exit 1 if not."),
    ("check", "check", "Prove WAL archiving works end to end: switch WAL, wait until it is archived."),
    ("top", "top", "The slowest queries from pg_stat_statements, refreshing in the terminal."),
    ("demo", "demo", "Run pgtool's whole lifecycle on a throwaway embedded PostgreSQL."),
]


NAMES = frozenset(name for name, _module, _help in COMMANDS)


def register(app: typer.Typer, only: str | None = None) -> None:
    """Add every command to `app`, or only the one named `only`."""
    for name, module_name, help_text in COMMANDS:
        if only is not None and name != only:
            continue
        module = importlib.import_module(f"pgtool.cli.{module_name}")
        func_name = name.replace("-", "_")
        func = getattr(module, func_name)
        # A module may hand a command's arguments through unparsed (archive-wal, restore-wal).
        context_settings = getattr(module, "CONTEXT_SETTINGS", {}).get(func_name)
        app.command(
            name=name,
            help=(func.__doc__ or help_text),
            short_help=help_text,
            context_settings=context_settings,
            add_help_option=context_settings is None,
        )(func)
