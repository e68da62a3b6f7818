"""A real PgBouncer (Debian's /usr/sbin/pgbouncer) for tests, started and stopped around a block.

PgBouncer refuses to run as root, so as root it runs as the server user (`runuser`), with its config,
auth file, log and pid file in a directory that user owns. It listens on 127.0.0.1 on a free port, no
unix socket. Reusable: `with PgBouncer(...) as bouncer: bouncer.dsn("app", user="alice", password=...)`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from pgtool.pg.cluster import free_port
from pgtool.pg.command import run_as_prefix
from pgtool.pg.privileges import give_to_server, server_user

BINARY = "/usr/sbin/pgbouncer"


def _quote_userlist(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


class PgBouncer:
    """PgBouncer in front of `server_host:server_port`.

    pool_mode: session, transaction or statement. auth_type: e.g. scram-sha-256.
    auth_users: (user, password-or-verifier) pairs written to the auth_file (the auth_user needs its
    plaintext password there: PgBouncer must log in to the server as it). auth_user / auth_query: the
    lookup PgBouncer runs for every other user. extra: further [pgbouncer] settings.
    """

    def __init__(
        self,
        server_host: str,
        server_port: int,
        *,
        pool_mode: str = "transaction",
        auth_type: str = "scram-sha-256",
        auth_users: Mapping[str, str] | None = None,
        auth_user: str | None = None,
        auth_query: str | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        if not os.access(BINARY, os.X_OK):
            raise RuntimeError(f"{BINARY} not found: apt-get install pgbouncer")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pgtool-bouncer-", dir="/tmp"))
        self.dir.chmod(0o700)
        self.ini = self.dir / "pgbouncer.ini"
        self.userlist = self.dir / "userlist.txt"
        self.log_file = self.dir / "pgbouncer.log"
        self.pid_file = self.dir / "pgbouncer.pid"
        settings = {
            "listen_addr": "127.0.0.1",
            "listen_port": str(self.port),
            "unix_socket_dir": "",
            "auth_type": auth_type,
            "auth_file": str(self.userlist),
            "pool_mode": pool_mode,
            "logfile": str(self.log_file),
            "pidfile": str(self.pid_file),
            "ignore_startup_parameters": "extra_float_digits,options",
            "server_tls_sslmode": "disable",
        }
        if auth_user:
            settings["auth_user"] = auth_user
        if auth_query:
            settings["auth_query"] = auth_query
        settings.update(extra or {})
        lines = ["[databases]", f"* = host={server_host} port={server_port}", "", "[pgbouncer]"]
        lines += [f"{k} = {v}" for k, v in settings.items()]
        self.ini.write_text("\n".join(lines) + "\n")
        self.userlist.write_text(
            "".join(f"{_quote_userlist(u)} {_quote_userlist(p)}\n" for u, p in (auth_users or {}).items())
        )
        self.userlist.chmod(0o600)
        for path in (self.dir, self.ini, self.userlist):
            give_to_server(path)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> PgBouncer:
        argv = [*run_as_prefix(server_user()), BINARY, str(self.ini)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd="/")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"pgbouncer exited with {self.proc.returncode}: {err} {self.log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"pgbouncer did not listen on {self.port} within {timeout}s: {self.log_tail()}")

    def dsn(self, dbname: str, *, user: str, password: str | None = None) -> str:
        dsn = f"host=127.0.0.1 port={self.port} dbname={dbname} user={user}"
        return dsn + (f" password={password}" if password is not None else "")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return " | ".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM the daemon itself (runuser may not forward it), then reap runuser."""
        pid = None
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pid_file.read_text().strip())
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            if self.proc.stderr:
                self.proc.stderr.close()
            self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PgBouncer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup()
