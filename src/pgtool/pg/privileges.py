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


READ, EXECUTE = 4, 1


def _permits(st: os.stat_result, uid: int, gids: set[int], want: int) -> bool:
    if uid == 0:
        return True
    if st.st_uid == uid:
        bits = st.st_mode >> 6
    elif st.st_gid in gids:
        bits = st.st_mode >> 3
    else:
        bits = st.st_mode
    return bits & want == want


def user_can_reach(path: str | os.PathLike[str], user: str, *, want: int = READ) -> bool:
    """Whether `user` can open `path` (`want`: READ, EXECUTE or both), judged by the mode bits of the
    file and of every directory on the way to it, with symlinks followed (ACLs are not consulted).

    A static check instead of a probe run as that user: it costs no process, and it is what decides
    whether a venv under /root (mode 0700) is usable by the server user.
    """
    entry = pwd.getpwnam(user)
    gids = set(os.getgrouplist(user, entry.pw_gid))
    as_given = Path(os.path.abspath(path))
    for candidate in (as_given, as_given.resolve()):
        try:
            for directory in reversed(candidate.parents):
                if not _permits(directory.stat(), entry.pw_uid, gids, EXECUTE):
                    return False
            if not _permits(candidate.stat(), entry.pw_uid, gids, want):
                return False
        except OSError:
            return False
    return True


def server_can_reach(path: str | os.PathLike[str], *, want: int = READ) -> bool:
    """`user_can_reach` for the server user; always True when pgtool is not root (the server is us)."""
    user = server_user()
    return user is None or user_can_reach(path, user, want=want)


def shared_cache_dir(name: str) -> Path:
    """A root-owned directory every user can read but only root can change: `/var/cache/pgtool/NAME`.

    Used (as root) for copies the server user must run: the embedded PostgreSQL and the WAL bundle,
    when they live somewhere it cannot reach (a checkout under /root). Refuses a directory someone
    else could have planted or can write, since the server would run what it holds.
    """
    root = Path(os.environ.get("PGTOOL_CACHE_DIR") or "/var/cache/pgtool")
    path = root / name
    for d in (root, path):
        try:
            d.mkdir(mode=0o755, parents=True, exist_ok=True)
        except OSError as exc:
            raise OperationError(
                f"cannot create {d}: {exc.strerror}",
                hint="point PGTOOL_CACHE_DIR at a directory root can write (a read-only root filesystem?)",
            ) from None
        st = d.lstat()
        if st.st_uid != os.geteuid() or st.st_mode & 0o022 or not Path(d).is_dir() or d.is_symlink():
            raise OperationError(
                f"{d} is not a directory only {pwd.getpwuid(os.geteuid()).pw_name} can write",
                hint=f"remove {d} (pgtool recreates it) or point PGTOOL_CACHE_DIR elsewhere",
            )
        d.chmod(0o755)
    return path
