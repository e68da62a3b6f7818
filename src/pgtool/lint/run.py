"""One `pgtool lint` run: merge config and flags, expand paths, lint, report, pick the exit code."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TextIO

from pgtool.errors import EXIT_FAILED, EXIT_OK, UsageError
from pgtool.lint.config import check_pg_version, load_settings, parse_rules
from pgtool.lint.engine import LintResult, lint_files
from pgtool.lint.parse import parse_size
from pgtool.lint.paths import expand
from pgtool.lint.reporters import FORMATS, write
from pgtool.lint.settings import LintSettings

_RULE_ID = re.compile(r"^MIG\d{3}(,MIG\d{3})*$", re.IGNORECASE)  # matches a flag value, not SQL


def run_lint(
    paths: list[str],
    *,
    output_format: str = "text",
    pg_version: int | None = None,
    config: Path | None = None,
    rules: list[str] | None = None,
    exclude: list[str] | None = None,
    max_file_size: str | None = None,
    assume_in_transaction: bool | None = None,
    since: str | None = None,
    rehearse: str | None = None,
    out: TextIO,
    cwd: Path | None = None,
) -> int:
    """Lint `paths` and write the report to `out`; returns 0 (no error finding) or 1.

    Raises UsageError (exit 2) for a bad format, version, rule id, config file or missing path, and
    for a path that is not a regular file (FIFO, device), a symlink loop or a file over the size limit.
    `since`: report only files changed since that git revision (`pgtool.lint.since`); an unknown
    revision or a directory outside git is a UsageError.
    `rehearse`: a DSN; the files (those `since` selects) are then applied to a throwaway copy of its
    database and measured (`pgtool.lint.rehearse`); a mismatch or a failed statement also exits 1.
    """
    fmt = output_format.lower()
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {output_format!r}")
    if rehearse is not None and fmt not in ("text", "json"):
        raise UsageError(f"--rehearse writes text or json, not {fmt}")
    settings, _found = load_settings(config, cwd=cwd)
    if pg_version is not None:
        settings.pg_version = check_pg_version(pg_version, "--pg-version")
    if max_file_size is not None:
        try:
            settings.max_file_size = parse_size(max_file_size)
        except ValueError:
            raise UsageError(
                f"--max-file-size must be a size such as 8MB or 500k, got {max_file_size!r}"
            ) from None
    if assume_in_transaction is not None:
        settings.assume_in_transaction = assume_in_transaction
    if rules:
        settings.only = parse_rules(rules, "--rules")
    for value in exclude or []:
        if _RULE_ID.match(value.strip()):
            settings.disabled |= parse_rules([value], "--exclude")
        else:
            settings.exclude_paths.append(value)
    if not paths:
        raise UsageError("no PATH given", hint="pgtool lint migrations/")
    files = expand(paths, settings.exclude_paths)
    if not files:
        # A CI gate pointed at the wrong folder must not pass silently.
        raise UsageError(
            f"no migration files found in {', '.join(paths)}",
            hint="directories are searched for *.sql files except *.down.sql",
        )
    report = None
    if since is not None:
        from pgtool.lint.since import changed_files, select

        report = select(files, changed_files(since, cwd))
    try:
        result = lint_files(files, settings, report)
    except OSError as exc:
        raise UsageError(f"cannot read {exc.filename}: {exc.strerror}") from None
    color = fmt == "text" and hasattr(out, "isatty") and out.isatty() and "NO_COLOR" not in os.environ
    if rehearse is not None:
        return _rehearse(
            rehearse, [f for f in files if report is None or f in report], result, settings, fmt, out, color
        )
    write(result, fmt, out, color=color)
    return EXIT_FAILED if result.errors else EXIT_OK


def _rehearse(
    dsn: str, files: list[str], result: LintResult, settings: LintSettings, fmt: str, out: TextIO, color: bool
) -> int:
    from pgtool.lint import parse
    from pgtool.lint.rehearse import rehearse
    from pgtool.lint.reporters import rehearsal as rehearsal_report

    texts: dict[str, str] = {}
    for path in files:
        try:
            texts[path] = parse.read_file(path, settings.max_file_size).decode("utf-8")
        except UnicodeDecodeError:
            texts[path] = ""  # reported as MIG000 by the lint; nothing to apply
    if result.findings and any(f.rule == "MIG000" for f in result.findings):
        raise UsageError("--rehearse: a file does not parse (MIG000); fix it before rehearsing")
    done = rehearse(dsn, files, texts, [*result.findings, *result.suppressed], settings)
    rehearsal_report.write(result, done, fmt, out, color=color)
    return EXIT_FAILED if result.errors or done.mismatches or done.failed else EXIT_OK
