"""The server's side of archiving, as `pgtool check` reads it: the settings that decide whether WAL
reaches the archive at all, whether archive_command sends it to the archive being checked, and how long
a quiet server may keep its last writes out of it (archive_timeout, the RPO bound).
"""

from __future__ import annotations

import os
import shlex
from typing import TYPE_CHECKING, Any

import psycopg

from pgtool.wal_check.model import OK, PROBLEM, WARNING, CheckResult

if TYPE_CHECKING:
    from pgtool.wal_check.target import Target

SETTINGS_SQL = """
SELECT name, setting FROM pg_catalog.pg_settings
WHERE name IN ('archive_mode', 'wal_level', 'archive_command', 'archive_library', 'archive_timeout')
"""
# pgtool's archive module's command (`pgtool.wal.module`): a custom setting, absent from pg_settings.
MODULE_COMMAND = "pgtool_archive.command"
MODULE_COMMAND_SQL = "SELECT pg_catalog.current_setting('pgtool_archive.command', true)"
MAX_ARCHIVE_TIMEOUT_S = 15 * 60
RESTART = "then restart the server"


def read_settings(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """The archiving settings; a setting hidden from this role (archive_command without
    pg_read_all_settings) is missing from the dict."""
    settings = {name: setting for name, setting in conn.execute(SETTINGS_SQL).fetchall()}
    if is_pgtool_module(settings.get("archive_library", "")):
        row = conn.execute(MODULE_COMMAND_SQL).fetchone()
        # A custom setting is readable by every role: NULL means it is set nowhere.
        settings[MODULE_COMMAND] = row[0] if row is not None and row[0] is not None else ""
    return settings


def _required(result: CheckResult, name: str, ok: bool, shown: str, problem: str, fix: str) -> bool:
    """One finding for a setting archiving needs: OK, or PROBLEM saying what it costs; returns `ok`."""
    if ok:
        result.add(name, OK, shown)
    else:
        result.add(name, PROBLEM, f"{shown}: {problem}", fix)
    return ok


def check_settings(result: CheckResult, settings: dict[str, str], role: str, archive: Target) -> bool:
    """Add one finding per setting; True when the server archives at all (archive_mode and wal_level)."""
    mode = settings.get("archive_mode", "off")
    level = settings.get("wal_level", "")
    archives = _required(
        result,
        "archive_mode",
        mode in ("on", "always"),
        f"archive_mode = {mode}",
        "the server archives no WAL; nothing is recoverable past the last backup",
        f"ALTER SYSTEM SET archive_mode = on; {RESTART}",
    )
    archives &= _required(
        result,
        "wal_level",
        level in ("replica", "logical"),
        f"wal_level = {level or 'unknown'}",
        "archived WAL cannot restore a base backup",
        f"ALTER SYSTEM SET wal_level = replica; {RESTART}",
    )
    library = settings.get("archive_library", "")
    if is_pgtool_module(library):
        result.add(
            "archive_library",
            OK,
            f"archive_library = {library}: pgtool's archive module, which runs pgtool_archive.command "
            "for each segment the uploader running ahead did not store",
        )
        if (settings.get("archive_command") or "").strip():
            result.add(
                "archive_command",
                PROBLEM,
                "archive_command is set beside archive_library: PostgreSQL 16 and later archive nothing then",
                "ALTER SYSTEM SET archive_command = ''; SELECT pg_reload_conf()",
            )
        _check_command(result, settings.get(MODULE_COMMAND), role, archive, MODULE_COMMAND)
    elif library:
        result.add(
            "archive_library",
            PROBLEM,
            f"archive_library = {library}: the server archives through it and ignores archive_command",
            "ALTER SYSTEM RESET archive_library; SELECT pg_reload_conf()",
        )
    else:
        _check_command(result, settings.get("archive_command"), role, archive)
    _check_timeout(result, settings.get("archive_timeout"))
    return archives


def is_pgtool_module(library: str) -> bool:
    """archive_library names pgtool's archive module (by name, or by a path to pgtool_archive.so)."""
    return os.path.basename(library).removesuffix(".so") == "pgtool_archive"


def _check_command(
    result: CheckResult, command: str | None, role: str, archive: Target, name: str = "archive_command"
) -> None:
    expected = f"{name} = '<pgtool> archive-wal %p %f --{_flag(archive)} {archive.display}'"
    if command is None:
        result.add(
            name,
            WARNING,
            f"{name} is hidden from role {role}; the end-to-end check still tests it",
            f"GRANT pg_read_all_settings TO {role} to see it",
        )
        return
    if not command.strip():
        result.add(
            name,
            PROBLEM,
            f"{name} is empty: the archiver waits and WAL piles up in pg_wal",
            f"ALTER SYSTEM SET {expected}; SELECT pg_reload_conf()",
        )
        return
    try:
        argv = shlex.split(command)
    except ValueError:
        argv = command.split()
    if "archive-wal" not in argv:
        # Only the program is quoted: the rest of a foreign command may carry a credential.
        program = os.path.basename(argv[0]) if argv else "?"
        result.add(
            name,
            WARNING,
            f"{name} runs {program}, not pgtool archive-wal",
            f"to archive with pgtool's checks: {expected}",
        )
        return
    dest = _destination(argv[argv.index("archive-wal") + 1 :])
    if dest is None:
        result.add(
            name,
            OK,
            f"{name} calls pgtool archive-wal with its archive from the server's environment "
            "($PGTOOL_REPO or $PGTOOL_ARCHIVE_DIR, not visible here); the end-to-end check proves it",
        )
        return
    flag, value = dest
    if flag == _flag(archive) and _same(archive, value):
        result.add(name, OK, f"{name} calls archive-wal --{flag} {archive.display}")
        return
    result.add(
        name,
        WARNING,
        f"{name} archives to --{flag} {value}, not to the {archive.kind} checked here ({archive.display})",
        f"check the archive {name} writes to, or set {expected}",
    )


def _flag(archive: Target) -> str:
    return "repo" if archive.kind == "repository" else "archive-dir"


def _destination(args: list[str]) -> tuple[str, str] | None:
    """(flag, value) of archive-wal's --repo or --archive-dir in its arguments, if given."""
    for i, arg in enumerate(args):
        for flag in ("repo", "archive-dir"):
            if arg == f"--{flag}" and i + 1 < len(args):
                return flag, args[i + 1]
            if arg.startswith(f"--{flag}="):
                return flag, arg.split("=", 1)[1]
    return None


def _same(archive: Target, value: str) -> bool:
    if archive.kind != "repository":
        return os.path.realpath(value) == os.path.realpath(archive.display)
    from pgtool.repo import RepoUsageError, parse_repo_url

    try:
        return parse_repo_url(value).display() == archive.display
    except RepoUsageError:
        return False


def _check_timeout(result: CheckResult, value: str | None) -> None:
    try:
        seconds = int(value or "0")
    except ValueError:
        seconds = 0
    if seconds == 0:
        result.add(
            "archive_timeout",
            WARNING,
            "archive_timeout = 0: on a quiet server the last writes may stay out of the archive "
            "until a segment fills (RPO unbounded)",
            "ALTER SYSTEM SET archive_timeout = '60s'; SELECT pg_reload_conf()",
        )
    elif seconds > MAX_ARCHIVE_TIMEOUT_S:
        result.add(
            "archive_timeout",
            WARNING,
            f"archive_timeout = {seconds}s: a quiet server may lose up to that much of its last writes (RPO)",
            "ALTER SYSTEM SET archive_timeout = '60s' (or what your RPO allows); SELECT pg_reload_conf()",
        )
    else:
        result.add("archive_timeout", OK, f"archive_timeout = {seconds}s: the RPO bound on a quiet server")
