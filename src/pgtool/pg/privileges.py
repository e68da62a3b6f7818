"""Running the PostgreSQL server as an unprivileged user.

postgres (and PgBouncer) refuse to run as root. When pgtool runs as root (containers, CI, a fresh
machine), throwaway clusters run as `PGTOOL_SERVER_USER`, else `postgres` if that user exists, else a
system user `pgtool` created on first use. Files the server must write are chowned to that user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

from pgtool.errors import OperationError

FALLBACK_USER = "pgtool"


def server_user() -> str | None:
    """The user servers run as, or None when pgtool itself is not root (then it is us)."""
    if os.geteuid() != 0:
        return None
    wanted = os.environ.get("PGTOOL_SERVER_USER")
    if wanted:
        return wanted
    for name in ("postgres", FALLBACK_USER):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    useradd = shutil.which("useradd")
    if not useradd:
        raise OperationError(
            "running as root and no unprivileged user to run postgres as",
            hint="create a 'postgres' user or set PGTOOL_SERVER_USER",
        )
    subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", FALLBACK_USER],
        check=True,
        capture_output=True,
    )
    return FALLBACK_USER


def server_uid_gid() -> tuple[int, int] | None:
    user = server_user()
    if user is None:
        return None
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def give_to_server(path: str | os.PathLike[str], *, recursive: bool = False) -> None:
    """Make `path` owned by the server user (no-op when not root)."""
    ids = server_uid_gid()
    if ids is None:
        return
    uid, gid = ids
    os.chown(path, uid, gid)
    if recursive:
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                os.lchown(os.path.join(root, name), uid, gid)


def make_server_dir(path: str | os.PathLike[str], mode: int = 0o700) -> Path:
    """Create `path` (and parents), owned by the server user, with `mode`."""
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    p.chmod(mode)
    give_to_server(p)
    return p
