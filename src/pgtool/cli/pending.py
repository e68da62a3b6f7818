"""Placeholder for commands whose issue has not landed: exit 2, "not implemented yet"."""

from __future__ import annotations

from collections.abc import Callable

import typer

SETTINGS = {"context_settings": {"allow_extra_args": True, "ignore_unknown_options": True}}


def make(name: str) -> Callable[[typer.Context], None]:
    def pending(ctx: typer.Context) -> None:
        from pgtool.cli.runner import run_command
        from pgtool.errors import NotImplementedYet

        def body(_report: object) -> None:
            raise NotImplementedYet(name)

        run_command(name, body)

    pending.__name__ = name.replace("-", "_")
    return pending
