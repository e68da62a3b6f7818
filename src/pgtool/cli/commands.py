"""The command list: name, module, one-line help. `pgtool --help` shows them in this order.

A command's module under pgtool.cli defines a function named like the command (dashes become
underscores). Commands whose issue has not landed point at `pgtool.cli.pending`, which exits 2 with
"not implemented yet" - never a fake success.
"""

from __future__ import annotations

import importlib

import typer

# (name, module, one-line help)
COMMANDS: list[tuple[str, str, str]] = [
    ("backup", "pending", "Dump every database with pg_dump (custom format), with checksums and retention."),
    ("basebackup", "pending", "Take a pg_basebackup into a dated directory, apply retention, prune WAL."),
    ("archive-wal", "wal", "Archive one WAL file durably (what archive_command calls)."),
    ("restore-wal", "wal", "Restore one WAL file from the archive (what restore_command calls)."),
    ("verify", "pending", "Prove backups restore: restore drills with row counts, pushed to Prometheus."),
    ("recover", "pending", "Prepare a data directory for point-in-time recovery or as a standby."),
    ("bootstrap-extensions", "pending", "Install pg_stat_statements everywhere and least-privilege roles."),
    ("partitions", "pending", "Keep monthly range partitions created ahead, with optional retention."),
    ("refresh-mv", "pending", "Refresh materialized views concurrently, skipping ones already refreshing."),
    ("lint", "pending", "Lint SQL migrations for operationally unsafe DDL."),
    ("bench", "pending", "Benchmark query rewrites against a real PostgreSQL."),
    ("demo", "demo", "Run pgtool's whole lifecycle on a throwaway embedded PostgreSQL."),
]


def register(app: typer.Typer) -> None:
    """Add every command to `app`."""
    for name, module_name, help_text in COMMANDS:
        module = importlib.import_module(f"pgtool.cli.{module_name}")
        if module_name == "pending":
            func = module.make(name)
            app.command(name=name, help=help_text, short_help=help_text, **module.SETTINGS)(func)
            continue
        func = getattr(module, name.replace("-", "_"))
        extra = {}
        if hasattr(func, "context_settings"):
            extra["context_settings"] = func.context_settings
            extra["add_help_option"] = False
        app.command(name=name, help=(func.__doc__ or help_text), short_help=help_text, **extra)(func)
