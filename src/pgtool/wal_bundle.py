"""The WAL bundle: archive-wal and restore-wal as one self-contained file any python3 >= 3.11 runs.

PostgreSQL runs `archive_command` / `restore_command` as its own user, who may not reach pgtool's venv
(a checkout under /root, mode 0700) or may live in an image without it (the official postgres image,
the file copied in by an init container, as WAL-G is usually deployed). The WAL commands are
stdlib-only, so every module of `pgtool.wal` and the pgtool modules they import (found by reading
their imports, so a new module joins by itself) are zipped with a `__main__` in `python -m zipapp`'s
layout:

    python3 /pgtool/pgtool-wal.pyz archive-wal %p %f --archive-dir /wal-archive

Compression needs the `zstandard` / `lz4` packages, which are not stdlib: the interpreter running the
bundle must have them, or `--compress` and compressed archives fail (archive-wal 1, restore-wal 126).
A backup repository (`--repo`) needs `obstore` and PyNaCl (with cffi's `_cffi_backend`) the same way:
the repository modules ride in the bundle, but import those only when `--repo` is given; without them
archive-wal/restore-wal --repo say so in one line. For throwaway clusters (`server_command`), copies
of all these packages go beside the bundle when the server's interpreter is the one they were built
for (`server_runs_repository` tells whether that is so).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import io
import os
import shlex
import sys
import tempfile
import zipfile
from pathlib import Path

import pgtool
from pgtool.errors import OperationError

# Imported only inside the codec functions, and only to (de)compress: optional in the bundle.
OPTIONAL_IMPORTS = frozenset({"zstandard", "lz4"})
# Imported by the repository modules, which only `--repo` loads: optional in the bundle, allowed there only.
REPOSITORY_IMPORTS = frozenset({"obstore", "nacl", "zstandard"})
# Copied beside the bundle for throwaway clusters (top-level packages or single-file extension modules).
COPIED_PACKAGES = ("_cffi_backend", "lz4", "nacl", "obstore", "zstandard")
MIN_PYTHON = (3, 11)
# A fixed timestamp makes the bundle's bytes (and so its cache name) depend on its content only.
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)

MAIN = """\
# pgtool WAL bundle {version}: archive-wal and restore-wal, stdlib only.
import os
import sys

if sys.version_info < {min_python}:
    sys.stderr.write("pgtool WAL bundle needs Python {min_text} or newer\\n")
    sys.exit(126 if sys.argv[1:2] == ["restore-wal"] else 1)
# Codec packages copied beside the bundle for this interpreter (throwaway clusters only).
_lib = os.path.splitext(os.path.abspath(sys.argv[0]))[0] + ".lib"
try:
    with open(os.path.join(_lib, "CACHE_TAG")) as _tag:
        if _tag.read().strip() == sys.implementation.cache_tag:
            sys.path.append(_lib)
except OSError:
    pass
from pgtool.wal.fastcli import main

if sys.argv[1:2] not in (["archive-wal"], ["restore-wal"]):
    sys.stderr.write("usage: python3 BUNDLE archive-wal|restore-wal ... (see pgtool archive-wal --help)\\n")
    sys.exit(2)
sys.exit(main(sys.argv[1:]))
"""


class BundleError(OperationError):
    """The bundle cannot be built (a WAL module imports something outside the stdlib)."""


def _package_root() -> Path:
    return Path(pgtool.__file__).resolve().parent


def _module_file(name: str) -> Path | None:
    """The source file of pgtool module `name` (pgtool.x.y), or None if there is none."""
    parts = name.split(".")[1:]
    base = _package_root().joinpath(*parts)
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _imports(name: str, path: Path) -> tuple[set[str], set[str]]:
    """(pgtool modules, other top-level modules) that `path` imports anywhere, functions included."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    ours: set[str] = set()
    others: set[str] = set()

    def add(module: str) -> None:
        if module == "pgtool" or module.startswith("pgtool."):
            ours.add(module)
        elif module != "__future__":
            others.add(module.split(".")[0])

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            add(module)
            for alias in node.names:  # `from pgtool.wal import durable` names a module
                if (module == "pgtool" or module.startswith("pgtool.")) and _module_file(
                    f"{module}.{alias.name}"
                ):
                    ours.add(f"{module}.{alias.name}")
    return ours, others


# WAL in a backup repository (--repo) needs obstore and PyNaCl: the bundle leaves it out, and its
# archive-wal/restore-wal say so in one line when given --repo (pgtool.wal.fastcli).
def _repository_module(name: str) -> bool:
    """The modules `--repo` loads: pgtool.repo and pgtool.wal.repo_*; they may import REPOSITORY_IMPORTS."""
    return name == "pgtool.repo" or name.startswith(("pgtool.repo.", "pgtool.wal.repo_"))


def bundle_modules() -> dict[str, Path]:
    """Archive name -> source file: all of pgtool.wal, what it imports of pgtool, their packages.

    Raises BundleError when any of them imports a module outside the stdlib (OPTIONAL_IMPORTS aside).
    """
    wal_dir = _package_root() / "wal"
    todo = ["pgtool.wal"] + [
        f"pgtool.wal.{p.stem}" for p in sorted(wal_dir.glob("*.py")) if p.stem != "__init__"
    ]
    found: dict[str, Path] = {}
    outside: dict[str, str] = {}
    while todo:
        name = todo.pop()
        if name in found:
            continue
        path = _module_file(name)
        if path is None:
            raise BundleError(f"{name} is imported by the WAL commands but is not a pgtool module")
        found[name] = path
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages
        ours, others = _imports(name, path)
        todo.extend(ours)
        allowed = OPTIONAL_IMPORTS | (REPOSITORY_IMPORTS if _repository_module(name) else frozenset())
        for module in others - set(sys.stdlib_module_names) - allowed:
            outside.setdefault(module, name)
    if outside:
        listed = ", ".join(f"{m} (in {n})" for m, n in sorted(outside.items()))
        raise BundleError(
            f"the WAL commands import modules outside the stdlib: {listed}",
            hint="keep pgtool.wal stdlib-only, importing optional packages inside functions",
        )
    root = _package_root().parent
    return {str(path.relative_to(root)): path for path in found.values()}


def build_bytes() -> bytes:
    """The bundle's bytes: deterministic for the same pgtool sources."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        main = MAIN.format(
            version=pgtool.__version__,
            min_python=MIN_PYTHON,
            min_text=".".join(map(str, MIN_PYTHON)),
        )
        entries = {"__main__.py": main.encode(), **{k: v.read_bytes() for k, v in bundle_modules().items()}}
        for arcname in sorted(entries):
            info = zipfile.ZipInfo(arcname, _ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, entries[arcname])
    return b"#!/usr/bin/env python3\n" + buffer.getvalue()


def write_bundle(dest: str | os.PathLike[str], data: bytes | None = None) -> Path:
    """Write the bundle to `dest` atomically (temporary, fsync, rename), mode 0755; returns the path."""
    dest = Path(dest)
    data = build_bytes() if data is None else data
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o755)  # noqa: S103 (run by the server user; holds no secret)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


# -- throwaway clusters ---------------------------------------------------------------------------


def server_can_run_console_script(exe: str) -> bool:
    """Whether the server user can run this installation's console script, interpreter and package."""
    from pgtool.pg import privileges

    both = privileges.READ | privileges.EXECUTE
    if not privileges.server_can_reach(exe, want=both):
        return False
    with open(exe, "rb") as f:
        first = f.readline()
    if first.startswith(b"#!"):
        interpreter = first[2:].decode(errors="replace").split()[0]
        if not privileges.server_can_reach(interpreter, want=both):
            return False
    return privileges.server_can_reach(pgtool.__file__)


@functools.lru_cache(maxsize=1)
def server_python() -> str:
    """An interpreter (>= 3.11) the server user can run: this venv's base interpreter (whose codec
    packages fit), else Debian's /usr/bin/python3, else python3 on PATH; OperationError if none."""
    import shutil

    from pgtool.pg import command, privileges

    base = getattr(sys, "_base_executable", "") or ""
    candidates = [
        os.environ.get("PGTOOL_SERVER_PYTHON", ""),
        base,
        "/usr/bin/python3",
        shutil.which("python3"),
    ]
    both = privileges.READ | privileges.EXECUTE
    for candidate in candidates:
        if (
            not candidate
            or not os.path.isabs(candidate)
            or not privileges.server_can_reach(candidate, want=both)
        ):
            continue
        probe = command.run(
            [candidate, "-I", "-S", "-c", f"import sys; sys.exit(sys.version_info < {MIN_PYTHON})"],
            check=False,
            log_stderr_level="debug",
        )
        if probe.returncode == 0:
            return candidate
    raise OperationError(
        f"the server user {privileges.server_user()!r} can run neither pgtool ({sys.executable}) nor a "
        f"python3 >= {'.'.join(map(str, MIN_PYTHON))}",
        hint="install Debian's python3 (apt-get install python3) or set PGTOOL_SERVER_PYTHON",
    )


def _copy_codecs(lib: Path) -> None:
    """Copies of the installed codec and repository packages in `lib`, tagged with this interpreter's ABI."""
    import importlib.util
    import shutil

    staging = Path(tempfile.mkdtemp(prefix=f".{lib.name}.", dir=lib.parent))
    try:
        for name in COPIED_PACKAGES:
            spec = importlib.util.find_spec(name)
            if spec is None:
                continue
            if not spec.submodule_search_locations:  # a single-file module (_cffi_backend's .so)
                if spec.origin and os.path.isfile(spec.origin):
                    shutil.copy2(spec.origin, staging / os.path.basename(spec.origin))
                continue
            for location in spec.submodule_search_locations:
                shutil.copytree(location, staging / name, ignore=shutil.ignore_patterns("__pycache__"))
        (staging / "CACHE_TAG").write_text(sys.implementation.cache_tag + "\n")
        for root, dirs, files in os.walk(staging):
            for entry in dirs:
                os.chmod(os.path.join(root, entry), 0o755)  # noqa: S103 (the server user reads it)
            for entry in files:
                os.chmod(os.path.join(root, entry), 0o644)
        staging.chmod(0o755)
        try:
            os.rename(staging, lib)
        except OSError:  # another process made it first
            if not lib.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def cached_bundle() -> Path:
    """The bundle (and its codec copies) in the root-owned shared cache, written once per content."""
    from pgtool.pg.privileges import shared_cache_dir

    data = build_bytes()
    digest = hashlib.sha256(data + sys.implementation.cache_tag.encode()).hexdigest()[:16]
    cache = shared_cache_dir("wal")
    path = cache / f"pgtool-wal-{pgtool.__version__}-{digest}.pyz"
    if not path.is_file():
        lib = path.with_suffix(".lib")
        if not lib.is_dir():
            _copy_codecs(lib)
        write_bundle(path, data)
    return path


@functools.lru_cache(maxsize=1)
def server_runs_repository() -> bool:
    """Whether the server user's archive-wal/restore-wal can use a backup repository (`--repo`): this
    installation's pgtool, or the bundle under an interpreter of this one's ABI, for which the
    repository packages are copied beside it (`cached_bundle`)."""
    from pgtool.pg import binaries, command

    if server_can_run_console_script(binaries.pgtool_executable()):
        return True
    probe = command.run(
        [server_python(), "-I", "-S", "-c", "import sys; print(sys.implementation.cache_tag)"],
        capture_stdout=True,
        check=False,
        log_stderr_level="debug",
    )
    return probe.returncode == 0 and (probe.stdout or "").strip() == sys.implementation.cache_tag


def server_command() -> str:
    """How the server user runs pgtool's WAL commands, shell-quoted: `<prefix> archive-wal ...`.

    This installation's pgtool when the server user can run it (not root: the server is us; a venv
    every user can read); otherwise a system python3 and the bundle in the shared cache.
    """
    from pgtool.pg import binaries

    exe = binaries.pgtool_executable()
    if server_can_run_console_script(exe):
        return shlex.quote(exe)
    return f"{shlex.quote(server_python())} {shlex.quote(str(cached_bundle()))}"
