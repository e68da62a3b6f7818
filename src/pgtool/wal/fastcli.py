"""Stdlib-only command line for archive-wal and restore-wal.

PostgreSQL runs these once per WAL segment, so this path imports neither Typer nor psycopg:
`pgtool.cli.entry` hands argv here before anything else is imported. It logs exactly one line to
stderr, rendered by `pgtool.wal.logline` like every other command's summary event (event, command,
outcome, exit_code, duration_s, level, timestamp), JSON unless stderr is a TTY
(PGTOOL_LOG_FORMAT=json|console|auto), filtered by PGTOOL_LOG_LEVEL like the rest of pgtool.
"""

from __future__ import annotations

import os
import sys
import time

from pgtool.wal.errors import (
    ARCHIVE_FAILED,
    ARCHIVE_USAGE,
    RESTORE_ERROR,
    WalCommandError,
)

# Not typing.TYPE_CHECKING: importing typing costs ~7 ms of this per-segment path. Mypy reads any
# constant of this name as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from types import ModuleType

    from pgtool.wal.restoring import RestoreResult
    from pgtool.wal.results import ArchiveResult

ARCHIVE_DIR_ENV = "PGTOOL_ARCHIVE_DIR"
REPO_ENV = "PGTOOL_REPO"  # as pgtool.repo.REPO_ENV; not imported: that pulls in obstore
REPO_KEY_FILE_ENV = "PGTOOL_REPO_KEY_FILE"


class _UsageError(Exception):
    pass


def _parser(command: str) -> argparse.ArgumentParser:
    from pgtool.wal.fastcli_help import build_parser

    return build_parser(command, _UsageError)


class _Args:
    """The parsed command line of either command (argparse's attribute names)."""

    def __init__(self) -> None:
        self.wal_path = ""  # archive-wal
        self.wal_name = ""
        self.dest_path = ""  # restore-wal
        self.archive_dir: str | None = None
        self.repo: str | None = None
        self.repo_key_file: str | None = None
        self.compress: str | None = None
        self.compress_level: int | None = None
        self.allow_system_id_change = False
        self.ahead: int | None = None
        self.prefetch: int | None = None
        self.allow_unverified = False


def _parse(command: str, args: list[str]) -> _Args:
    """The command line; _UsageError, or SystemExit for --help."""
    parsed = _quick_parse(command, args)
    if parsed is None:
        parsed = _Args()
        for key, value in vars(_parser(command).parse_args(args)).items():
            setattr(parsed, key, value)
    return _resolve(parsed)


def _resolve(parsed: _Args) -> _Args:
    """Settle where the archive is: --archive-dir or --repo, else $PGTOOL_ARCHIVE_DIR or $PGTOOL_REPO."""
    if parsed.archive_dir and parsed.repo:
        raise _UsageError("give --archive-dir or --repo, not both")
    if not parsed.archive_dir and not parsed.repo:
        env_dir, env_repo = os.environ.get(ARCHIVE_DIR_ENV), os.environ.get(REPO_ENV)
        if env_dir and env_repo:
            raise _UsageError(
                f"both ${ARCHIVE_DIR_ENV} and ${REPO_ENV} are set: pass --archive-dir or --repo"
            )
        if not env_dir and not env_repo:
            raise _UsageError(f"--archive-dir or --repo is required (or ${ARCHIVE_DIR_ENV} / ${REPO_ENV})")
        parsed.archive_dir, parsed.repo = env_dir or None, env_repo or None
    if parsed.repo:
        parsed.repo_key_file = parsed.repo_key_file or os.environ.get(REPO_KEY_FILE_ENV) or None
        if parsed.compress == "lz4":
            raise _UsageError("a repository stores WAL with zstd: use --compress zstd or none")
    return parsed


# The value options each command's quick parse takes (anything else goes to argparse).
_VALUE_OPTIONS = {
    "archive-wal": (
        "--archive-dir",
        "--repo",
        "--repo-key-file",
        "--compress",
        "--compress-level",
        "--ahead",
    ),
    "restore-wal": ("--archive-dir", "--repo", "--repo-key-file", "--prefetch"),
}


def _quick_parse(command: str, args: list[str]) -> _Args | None:
    """Parse the command lines PostgreSQL runs without importing argparse (~10 ms of a ~20 ms run).

    Returns None for anything unusual (--help, unknown, abbreviated or malformed options, a value
    that starts with "-", wrong arity): argparse then parses the same argv and reports errors exactly
    as documented in --help. tests/wal/test_wal_fastcli_parse.py checks that it agrees with argparse on
    every combination of the options, in every order, in both the --opt=value and --opt value forms.
    """
    parsed = _Args()
    values: dict[str, str] = {}
    positional: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--allow-system-id-change" and command == "archive-wal":
            parsed.allow_system_id_change = True
        elif arg == "--allow-unverified" and command == "restore-wal":
            parsed.allow_unverified = True
        elif arg.startswith("--"):
            key, eq, value = arg.partition("=")
            if key not in _VALUE_OPTIONS[command]:
                return None
            if not eq:
                i += 1
                if i == len(args) or args[i].startswith("-"):
                    return None  # argparse decides what "--archive-dir -x" means
                value = args[i]
            values[key] = value
        elif arg.startswith("-") and arg != "-":
            return None
        else:
            positional.append(arg)
        i += 1
    parsed.archive_dir = values.get("--archive-dir")
    parsed.repo = values.get("--repo")
    parsed.repo_key_file = values.get("--repo-key-file")
    parsed.compress = values.get("--compress")
    if (
        len(positional) != 2
        or "" in (parsed.archive_dir, parsed.repo, parsed.repo_key_file)
        or parsed.compress not in (None, "none", "zstd", "lz4")
    ):
        return None
    try:
        for option, attribute in (
            ("--compress-level", "compress_level"),
            ("--ahead", "ahead"),
            ("--prefetch", "prefetch"),
        ):
            if option in values:
                setattr(parsed, attribute, int(values[option]))
    except ValueError:
        return None
    if command == "archive-wal":
        parsed.wal_path, parsed.wal_name = positional
    else:
        parsed.wal_name, parsed.dest_path = positional
    return parsed


def main(argv: list[str]) -> int:
    """Run `archive-wal ...` or `restore-wal ...` (argv[0] is the command); return the exit code."""
    start = time.monotonic()
    command = argv[0]
    usage_code = ARCHIVE_USAGE if command == "archive-wal" else RESTORE_ERROR
    fields: dict[str, object] = {}
    try:
        args = _parse(command, argv[1:])
    except _UsageError as exc:
        _log(command, start, usage_code, f"usage: {exc} (see pgtool {command} --help)", fields)
        return usage_code
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else usage_code
    try:
        fields["wal_name"] = args.wal_name
        if command == "archive-wal":
            result = _archive(args, usage_code)
            if result.uploader_started:
                fields["uploader"] = "started"
            if result.waited_s:
                fields["waited_s"] = result.waited_s  # for the uploader's upload of this segment
            fields.update(
                result=result.outcome,
                path=result.path,
                bytes=result.bytes_in,
                stored_bytes=result.bytes_stored,
            )
            if result.removed_temporaries:
                fields["removed_temporaries"] = len(result.removed_temporaries)
        else:
            restored = _restore(args, usage_code)
            fields.update(result="restored", path=restored.source, bytes=restored.bytes_out)
            if restored.prefetched:
                fields["prefetched"] = restored.prefetched
            if not restored.verified:
                fields["checksum"] = "missing"
                _log(
                    command,
                    start,
                    0,
                    "restored WITHOUT checksum verification (no record; --allow-unverified)",
                    fields,
                    level="warning",
                )
                return 0
    except WalCommandError as exc:
        _log(command, start, exc.exit_code, exc.one_line(), fields)
        return exc.exit_code
    except KeyboardInterrupt:
        _log(
            command, start, usage_code if command == "restore-wal" else ARCHIVE_FAILED, "interrupted", fields
        )
        return usage_code if command == "restore-wal" else ARCHIVE_FAILED
    except Exception as exc:  # a bug: still one line and a code PostgreSQL handles safely
        code = RESTORE_ERROR if command == "restore-wal" else ARCHIVE_FAILED
        _log(command, start, code, f"unexpected error: {type(exc).__name__}: {exc}", fields)
        return code
    _log(command, start, 0, None, fields)
    return 0


# Segments uploaded ahead (pgtool.wal.repo_ahead) or prefetched (repo_prefetch) by default from a remote
# repository, where each request pays a round trip; a local one gains nothing from it.
REMOTE_PARALLEL = 8


def _remote_default(given: int | None, args: _Args) -> int:
    if given is not None:
        return max(0, given)
    return REMOTE_PARALLEL if (args.repo or "").startswith(("s3://", "azure://")) else 0


def _repository_module(usage_code: int, name: str = "repo_archive") -> ModuleType:
    """pgtool.wal.repo_archive (or repo_restoring), or one clear line where it cannot load (the
    stdlib-only bundle)."""
    import importlib

    try:
        module = importlib.import_module(f"pgtool.wal.{name}")
    except ImportError as exc:
        raise _missing_dependency(exc, usage_code) from exc
    return module


def _missing_dependency(exc: ImportError, usage_code: int) -> WalCommandError:
    """The one line for a repository client (obstore, PyNaCl, zstandard) this interpreter lacks; the
    repository modules import them only where used, so this may surface after the module loaded."""
    return WalCommandError(
        f"--repo needs pgtool installed with its dependencies ({exc.name or exc})",
        usage_code,
        hint="the standalone bundle (pgtool wal-bundle) reads and writes archive directories only",
    )


def _archive(args: _Args, usage_code: int) -> ArchiveResult:
    """archive-wal into the repository (--repo) or the archive directory."""
    compress = args.compress
    if args.repo:
        ahead = _remote_default(args.ahead, args)
        if ahead:
            confirmed = _archived_ahead(args)
            if confirmed is not None:
                return confirmed
        into_repo = _repository_module(usage_code).archive_wal_repo
        try:
            archived: ArchiveResult = into_repo(
                args.wal_path,
                args.wal_name,
                args.repo,
                key_file=args.repo_key_file,
                compress=compress != "none",
                allow_system_id_change=args.allow_system_id_change,
                ahead=ahead,
            )
        except ImportError as exc:
            raise _missing_dependency(exc, usage_code) from exc
        return archived
    from pgtool.wal.archiving import archive_wal

    codec = None if compress in (None, "none") else compress
    return archive_wal(
        args.wal_path,
        args.wal_name,
        args.archive_dir or "",
        compress=codec,
        level=args.compress_level,
        allow_system_id_change=args.allow_system_id_change,
    )


ARCHIVED_AHEAD = "archived ahead"


def _archived_ahead(args: _Args) -> ArchiveResult | None:
    """The result for a segment the uploader running ahead stored (`pgtool.wal.ahead_marks`), found
    without importing the repository client; None when this call must archive it itself."""
    from pgtool.wal import ahead_marks
    from pgtool.wal.results import ArchiveResult

    ident = ahead_marks.identity(args.repo or "", args.repo_key_file)
    found = ahead_marks.confirm(args.wal_path, args.wal_name, ident)
    if found is None:
        return None
    where, size, waited = found
    result = ArchiveResult(ARCHIVED_AHEAD, where, size, size, None, [])
    result.waited_s = round(waited, 3)
    return result


def _restore(args: _Args, usage_code: int) -> RestoreResult:
    """restore-wal from the repository (--repo) or the archive directory."""
    if args.repo:
        from_repo = _repository_module(usage_code, "repo_restoring").restore_wal_repo
        depth = _remote_default(args.prefetch, args)
        try:
            restored: RestoreResult = from_repo(
                args.wal_name, args.dest_path, args.repo, key_file=args.repo_key_file, prefetch=depth
            )
        except ImportError as exc:
            raise _missing_dependency(exc, usage_code) from exc
        return restored
    from pgtool.wal.restoring import restore_wal

    unverified = args.allow_unverified
    return restore_wal(args.wal_name, args.dest_path, args.archive_dir or "", allow_unverified=unverified)


def _log(
    command: str,
    start: float,
    code: int,
    error: str | None,
    fields: dict[str, object],
    level: str | None = None,
) -> None:
    """Write the one summary line, shaped like every pgtool command's "run finished"/"run failed"."""
    from pgtool.wal import logline

    duration = round(time.monotonic() - start, 3)
    if level == "warning":
        event, outcome = "run finished", "success"
    elif error is None:
        level, event = "info", "run finished"
        outcome = "success"
    elif command == "restore-wal" and code == 1:
        # Not an error for PostgreSQL: it probes for files that do not exist.
        level, event, outcome = "info", "run finished", "not found"
    else:
        level, event, outcome = "error", "run failed", "error"
    if logline.LEVELS[level] < logline.LEVELS[logline.level_from_env()]:
        return
    record: dict[str, object] = {"command": command, **fields, "outcome": outcome, "exit_code": code}
    record["duration_s"] = duration
    if error is not None:
        record["error" if level == "error" else ("warning" if level == "warning" else "detail")] = error
    as_json = logline.wants_json(sys.stderr)
    logline.write(logline.render(event, level, record, as_json=as_json))
