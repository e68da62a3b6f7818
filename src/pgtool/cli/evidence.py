"""`pgtool evidence list|show|verify|report`: read and check the evidence log of restore drills."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pgtool.cli.options import FORMAT, Repo, RepoKeyFile, TextFormat, choice, choice_argument, optional

if TYPE_CHECKING:
    from pgtool.obs.metrics import RunReport


class EvidenceChain(StrEnum):
    dumps = "dumps"
    base = "base"


class EvidenceAction(StrEnum):
    list = "list"
    show = "show"
    verify = "verify"
    report = "report"


def evidence(
    action: Annotated[
        EvidenceAction,
        choice_argument("list the records, show one, verify the chain, or report on a period."),
    ],
    record: Annotated[
        str | None,
        typer.Argument(help="With show: the record's number or file name.", show_default=False),
    ] = None,
    directory: Annotated[
        Path | None,
        optional(
            "--dir",
            help="The evidence directory: <backup-dir>/.evidence or <base-dir>/.evidence. Or use --repo.",
        ),
    ] = None,
    repo: Repo = None,
    repo_key_file: RepoKeyFile = None,
    chain: Annotated[
        EvidenceChain | None,
        choice(
            "--chain",
            help="With --repo: the chain to read, dumps (verify --repo) or base (verify --base --repo).",
            show_default=False,
        ),
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
    <base-dir>/.evidence (verify --base), or with --repo to the repository's
    evidence/dumps/ or evidence/base/ (--chain), chained by SHA-256 and, with
    --evidence-key-file, signed with Ed25519. verify exits 0 only if the whole chain
    holds (and every signature, by the --public-key-file key if given), 1 naming
    each removed, edited, reordered or damaged record. See docs/evidence.md.

    Example: pgtool evidence verify --dir /backups/dumps/.evidence --public-key-file evidence.pub

    Example: pgtool evidence verify --repo s3://backups/prod --repo-key-file /secrets/repo.key --chain base

    Example: pgtool evidence report --dir /backups/base/.evidence --since 2026-10-01
    """
    from pgtool.cli.options import one_place
    from pgtool.cli.runner import run_command

    def body(report: RunReport) -> int | None:
        from pgtool.errors import UsageError
        from pgtool.evidence import view

        one_place("evidence", "--dir", directory, repo)
        if directory is not None:
            if chain is not None:
                raise UsageError("--chain goes with --repo (a directory holds one chain)")
            records = view.directory_records(directory)
        else:
            assert repo is not None
            records = view.repository_records(repo, repo_key_file, chain.value if chain else None)
        text, code = view.run(
            action.value,
            records,
            record=record,
            public_key_file=public_key_file,
            since=since,
            as_json=output_format is TextFormat.json,
        )
        typer.echo(text)
        return code

    run_command("evidence", body)
