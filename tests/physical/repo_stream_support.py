"""Helpers for the streamed `basebackup --repo` and `recover --repo` tests: bulky rows, a backup taken
and an object of it damaged, pg_basebackup found and watched mid-stream, a run stopped (SIGTERM) or its
store stopped (SIGSTOP) midway, and the rows a recovered copy holds."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from physical_repo_support import RepoPrimary
from physical_support import adopt
from repo_pitr_support import flip_byte, rewrite_object

from pgharness import pgtool_argv, retry

ROWS_SQL = "SELECT count(*), sum(i), md5(string_agg(v, ',' ORDER BY i)) FROM t"


def fill(sql: Any, first: int, last: int) -> None:
    """Rows of random md5 text (stored uncompressed, and lz4 gains little on it): every 10000 rows
    make about 3 MB of backup, that streams for a while."""
    sql("CREATE TABLE IF NOT EXISTS t (i int PRIMARY KEY, v text)")
    sql("ALTER TABLE t ALTER COLUMN v SET STORAGE EXTERNAL")
    sql(
        "INSERT INTO t SELECT g, "
        + " || ".join(["md5(random()::text)"] * 8)
        + " FROM generate_series(%s::int, %s::int) g",
        (first, last),
    )


def children_named(pid: int, name: str) -> list[int]:
    """Processes called `name` whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        comm, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
        if comm == name and int(rest[1]) == pid:
            found.append(int(entry))
    return found


def written_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


def start_pgtool(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in ("PGTOOL_DSN", "DATABASE_URL")}
    full_env.update(env)
    return subprocess.Popen(
        [*pgtool_argv(), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
    )


def recovered(major: int, pgdata: Path) -> Any:
    """Start the recovered copy in `pgdata`, wait for promotion, return ROWS_SQL's row, stop it."""
    copy = adopt(major, pgdata)
    try:
        copy.start()
        copy.wait_until_ready(180, primary=True)
        with copy.connect(pin="off") as conn:
            return conn.execute(ROWS_SQL).fetchone()
    finally:
        copy.cleanup()


def backed_up(primary: RepoPrimary, rows: int, *args: str) -> Any:
    """`rows` rows of `fill`, a base backup of them (basebackup `args`) and the WAL up to its end
    archived; returns basebackup's result."""
    fill(primary.sql, 1, rows)
    primary.switch_wal()
    result = primary.basebackup(*args)
    primary.switch_wal()
    return result


def recover_damaged(primary: RepoPrimary, name: str, pgdata: Path) -> Any:
    """Flip a byte mid-object `name` of the repository, then recover into `pgdata`: it must fail (exit 1)
    naming the object and its checksum; returns recover's result. A second call puts the byte back."""
    rewrite_object(primary.repo(), name, flip_byte)
    result = primary.recover(pgdata)
    assert result.returncode == 1, result.stderr
    assert name in result.stderr and "checksum" in result.stderr, result.stderr
    return result


def start_recover(primary: RepoPrimary, pgdata: Path) -> subprocess.Popen[str]:
    """recover --repo into `pgdata`, started and not waited for."""
    url = primary.backend.url
    return start_pgtool("recover", "--repo", url, "--pgdata", str(pgdata), env=primary.backend.env)


def start_streaming(primary: RepoPrimary, *args: str) -> tuple[subprocess.Popen[str], int]:
    """basebackup --repo (with `args`) started; returns it and its pg_basebackup's pid, once running."""
    base = ("--dsn", primary.dsn(), "--repo", primary.backend.url)
    proc = start_pgtool("basebackup", *base, *args, env=primary.backend.env)
    pid = retry(lambda: children_named(proc.pid, "pg_basebackup")[0], timeout=120, interval=0.02)
    return proc, pid


def terminate(proc: subprocess.Popen[str]) -> str:
    """A pod stop (SIGTERM to pgtool): it must exit 130; returns its stderr."""
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    return stderr


@contextlib.contextmanager
def store_stopped_when(server: Any, ready: Callable[[], Any], interval: float) -> Iterator[None]:
    """Stop the store's processes (SIGSTOP: it stops answering, its connections stay open) from a
    thread once `ready()` holds, while the body runs; on leaving, that thread is waited for and the
    store continued (SIGCONT), so that the test's clean-up can still reach it."""

    def stop_store() -> None:
        retry(ready, timeout=120, interval=interval)
        os.killpg(server.proc.pid, signal.SIGSTOP)

    stopper = threading.Thread(target=stop_store)
    stopper.start()
    try:
        yield
    finally:
        stopper.join(timeout=130)
        os.killpg(server.proc.pid, signal.SIGCONT)
