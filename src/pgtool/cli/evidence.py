"""`pgtool evidence list|show|verify|report`: read and check the evidence log of restore drills."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pgtool.cli.options import FORMAT, TextFormat, optional

if TYPE_CHECKING:
    from pgtool.obs.metrics import RunReport


class EvidenceAction(StrEnum):
    list = "list"
    show = "show"
    verify = "verify"
    report = "report"


def evidence(
    action: Annotated[
        EvidenceAction,
        typer.Argument(
            help="list the records, show one, verify the chain, or report on a period.", case_sensitive=False
        ),
    ],
    directory: Annotated[
        Path,
        typer.Option(
            "--dir", help="The evidence directory, e.g. <backup-dir>/.evidence or <base-dir>/.evidence."
        ),
    ],
    record: Annotated[
        str | None,
        typer.Argument(help="With show: the record's number or file name.", show_default=False),
    ] = None,
    public_key_file: Annotated[
        Path | None,
        optional(
            "--public-key-file",
            help="With verify/report: every record must be signed by this Ed25519 key (PEM or raw 32 bytes).",
        ),
    ] = None,
    since: Annotated[
        str | None,
        optional("--since", help="With report: start of the period (ISO date or time, UTC if no zone)."),
    ] = None,
    output_format: Annotated[TextFormat, FORMAT] = TextFormat.text,
) -> None:
    """Read and check the evidence log the restore drills (pgtool verify) append to.

    Each drill appends one JSON record to <backup-dir>/.evidence (dumps) or
    <base-dir>/.evidence (verify --base), chained by SHA-256 and, with
    --evidence-key-file, signed with Ed25519. verify exits 0 only if the whole chain
    holds (and every signature, by the --public-key-file key if given), 1 naming
    each removed, edited or reordered record. See docs/evidence.md.

    Example: pgtool evidence verify --dir /backups/dumps/.evidence --public-key-file evidence.pub

    Example: pgtool evidence report --dir /backups/base/.evidence --since 2026-10-01
    """
    from pgtool.cli.runner import run_command

    def body(report: RunReport) -> int | None:
        from pgtool.evidence import view

        text, code = view.run(
            action.value,
            directory,
            record=record,
            public_key_file=public_key_file,
            since=since,
            as_json=output_format is TextFormat.json,
        )
        typer.echo(text)
        return code

    run_command("evidence", body)
