"""Secrets for libpq client binaries (pg_dump, pg_restore, pg_basebackup), never on argv.

A DSN's `password` and `sslpassword` leave the conninfo and go to a libpq service file
(`PGSERVICEFILE`, section `[pgtool]`, named by `service=pgtool` in the conninfo): a service file can
hold any connection parameter, while libpq has no environment variable for `sslpassword`, and its
values take the DSN's place in libpq's precedence (after the conninfo, before PG* variables).
When the DSN (or PGSERVICE) names a service of its own (libpq allows one), the password goes to a passfile
(`PGPASSFILE`) instead, and an `sslpassword` belongs in that service file.

The file lives in a private 0700 directory (`pgtool-secrets-*` under $TMPDIR) that is removed when the
child is done, at exit, and when a signal ends the run (`remove_all()`, called by the handler of
`pgtool.pg.terminate`): plaintext secrets never outlive the run, short of SIGKILL.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator

from pgtool.errors import UsageError

SECRET_KEYS = ("password", "sslpassword")
SERVICE = "pgtool"
DIR_PREFIX = "pgtool-secrets-"

_DIRS: set[str] = set()
_LOCK = threading.Lock()


def remove_all() -> None:
    """Remove every secret directory still present (exit and signal path; safe to call twice)."""
    with _LOCK:
        dirs = list(_DIRS)
        _DIRS.clear()
    for path in dirs:
        shutil.rmtree(path, ignore_errors=True)


atexit.register(remove_all)


@contextlib.contextmanager
def for_client(
    params: dict[str, str], secrets: dict[str, str]
) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """(conninfo parameters to add, environment to add) that hand `secrets` to a libpq client.

    params: the conninfo's other parameters (only `service` is looked at).
    """
    if not secrets:
        yield {}, {}
        return
    with _private_dir() as directory:
        if "service" in params or os.environ.get("PGSERVICE"):  # a service of the user's own
            if "sslpassword" in secrets:
                raise UsageError(
                    "sslpassword cannot be combined with service= in the DSN or PGSERVICE",
                    hint="put sslpassword in that service's entry of the service file",
                )
            yield {}, {"PGPASSFILE": _write(directory, "pgpass", _passfile_text(secrets["password"]))}
            return
        if any("\n" in v or "\r" in v for v in secrets.values()):
            raise UsageError("a password holding a line break cannot be passed to libpq's tools")
        # libpq trims trailing whitespace from service-file lines; such a password goes to a passfile.
        unsafe = {k: v for k, v in secrets.items() if v != v.rstrip()}
        if "sslpassword" in unsafe:
            raise UsageError("an sslpassword ending in whitespace cannot be passed to libpq's tools")
        lines = [f"[{SERVICE}]"] + [f"{k}={v}" for k, v in secrets.items() if k not in unsafe]
        env = {"PGSERVICEFILE": _write(directory, "pg_service.conf", "\n".join(lines) + "\n")}
        if "password" in unsafe:
            env["PGPASSFILE"] = _write(directory, "pgpass", _passfile_text(unsafe["password"]))
        yield {"service": SERVICE}, env


def _passfile_text(password: str) -> str:
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    return f"*:*:*:*:{escaped}\n"


@contextlib.contextmanager
def _private_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix=DIR_PREFIX)  # 0700: nobody else may even list it
    with _LOCK:
        _DIRS.add(path)
    try:
        yield path
    finally:
        with _LOCK:
            _DIRS.discard(path)
        shutil.rmtree(path, ignore_errors=True)


def _write(directory: str, name: str, text: str) -> str:
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    return path
