"""A throwaway PgBouncer in front of the throwaway cluster: the path production traffic takes.

Applications reach PostgreSQL through PgBouncer in transaction mode; each statement then crosses one
more hop, and PgBouncer 1.18 cannot carry server-side prepared statements, so psycopg must run with
`prepare_threshold=None`. `pgtool bench --via-pgbouncer` measures that path. PgBouncer refuses to run
as root, so it runs as the server user; it is a long-running child, hence `pgtool.pg.command.start`
(registered, so a signal ending the run reaches it) rather than `command.run` (which waits for its
end). It listens on 127.0.0.1 only, with trust authentication, for the lifetime of the run.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from pgtool.errors import BinaryNotFoundError, OperationError
from pgtool.obs.logging import get_logger
from pgtool.pg.cluster import free_port
from pgtool.pg.command import DEVNULL, run_as_prefix, start, stop
from pgtool.pg.privileges import give_to_server, server_user

START_TIMEOUT = 20.0


def pgbouncer_binary() -> str:
    found = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )
    if not found:
        raise BinaryNotFoundError(
            "pgbouncer not found", hint="install the pgbouncer package or drop --via-pgbouncer"
        )
    return found


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def pgbouncer(
    server_port: int, user: str, pool_size: int, *, admin_users: str | None = None
) -> Iterator[int]:
    """Run PgBouncer (transaction mode) in front of 127.0.0.1:`server_port`; yield its port.

    admin_users: roles that may use the `pgbouncer` admin console (SHOW POOLS and the like).
    """
    binary = pgbouncer_binary()
    directory = Path(tempfile.mkdtemp(prefix="pgtool-bench-pgbouncer-"))
    give_to_server(directory)
    port = free_port()
    ini = directory / "pgbouncer.ini"
    (directory / "userlist.txt").write_text(f'"{user}" ""\n')
    ini.write_text(
        "\n".join(
            [
                "[databases]",
                f"* = host=127.0.0.1 port={server_port}",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {port}",
                "unix_socket_dir =",
                "auth_type = trust",
                f"auth_file = {directory / 'userlist.txt'}",
                *([f"admin_users = {admin_users}"] if admin_users else []),
                "pool_mode = transaction",
                "max_client_conn = 500",
                f"default_pool_size = {pool_size}",
                f"logfile = {directory / 'pgbouncer.log'}",
                f"pidfile = {directory / 'pgbouncer.pid'}",
                "ignore_startup_parameters = extra_float_digits",
                "",
            ]
        )
    )
    give_to_server(directory, recursive=True)
    log = get_logger().bind(port=port, directory=str(directory))
    proc = start(
        [*run_as_prefix(server_user()), binary, str(ini)],
        what="pgbouncer",
        stdin=DEVNULL,
        stdout=DEVNULL,
        stderr=DEVNULL,
        cwd="/",
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _listening(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = ""
                with contextlib.suppress(OSError):
                    tail = " | ".join((directory / "pgbouncer.log").read_text().splitlines()[-3:])
                raise OperationError(f"pgbouncer did not start: {tail or 'no log'}")
            time.sleep(0.1)
        log.info("pgbouncer started", pool_mode="transaction")
        yield port
    finally:
        stop(proc)
        shutil.rmtree(directory, ignore_errors=True)
        log.info("pgbouncer stopped")
