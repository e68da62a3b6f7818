"""Secrets and signals on real processes: no password outlives a run, whatever stops it, and every
child pgtool started is reached by SIGTERM, whichever thread started it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgharness import pgtool_argv, retry, run_pgtool
from pgtool.pg import command


@pytest.fixture
def silent_server() -> Iterator[tuple[int, threading.Event]]:
    """A TCP port that accepts connections and never answers: a hung PostgreSQL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    accepted = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            held.append(conn)
            accepted.set()

    threading.Thread(target=accept, daemon=True).start()
    yield sock.getsockname()[1], accepted
    sock.close()
    for conn in held:
        conn.close()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _leftovers(tmpdir: Path) -> list[str]:
    return [p.name for p in tmpdir.iterdir() if p.name.startswith("pgtool-")]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("args", [["backup", "--dest", "{dest}"], ["status"]])
def test_a_signal_during_a_hung_connect_ends_the_run_at_once_and_leaves_no_secret(
    tmp_path, silent_server, signum, args
):
    port, accepted = silent_server
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {
        **os.environ,
        "TMPDIR": str(tmpdir),
        # A connect that would hang for ten minutes: only the signal can end it in time.
        "PGTOOL_DSN": f"postgresql://backup:s3cret@127.0.0.1:{port}/postgres?connect_timeout=600",
        "PGCONNECT_TIMEOUT": "600",
    }
    env.pop("DATABASE_URL", None)
    argv = [a.format(dest=tmp_path / "dumps") for a in args]
    # A session of its own: the signal goes to the whole process group, as Ctrl-C on a terminal does.
    proc = subprocess.Popen(
        [*pgtool_argv(), *argv], env=env, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    assert accepted.wait(60), "pgtool never connected"
    os.killpg(proc.pid, signum)
    try:
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    events = [json.loads(line) for line in stderr.splitlines()]
    assert events[-1]["event"] == "run failed" and events[-1]["error"] == "interrupted"
    assert "s3cret" not in stderr
    assert _leftovers(tmpdir) == []


def _script_pid_file(tmp_path: Path) -> Path:
    return tmp_path / "child.pid"


SLEEPER = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(120)"


def test_sigterm_reaches_a_child_started_from_a_worker_thread(tmp_path):
    """pg_dump and pg_restore run from worker threads, where no signal handler can be installed."""
    marker = _script_pid_file(tmp_path)
    script = textwrap.dedent(
        f"""
        import sys, threading
        from pgtool.cli.runner import run_command
        from pgtool.pg import command

        def body(report):
            def work():
                try:
                    command.run([sys.executable, "-c", {SLEEPER!r}, {str(marker)!r}])
                except Exception:
                    pass
            t = threading.Thread(target=work)
            t.start()
            t.join()

        run_command("unit", body)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    child = int(retry(lambda: marker.read_text().strip(), timeout=30))
    proc.send_signal(signal.SIGTERM)
    try:
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert retry(lambda: _gone(child), timeout=20)


def test_sigterm_while_a_binary_holds_a_password_removes_the_file(tmp_path):
    """Even without the runner (pgtool used as a library), SIGTERM unwinds instead of killing."""
    marker = _script_pid_file(tmp_path)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    script = textwrap.dedent(
        f"""
        import sys
        from pgtool.pg import command

        with command.libpq_args("host=db password=s3cret sslpassword=k3y") as (conninfo, env):
            command.run([sys.executable, "-c", {SLEEPER!r}, {str(marker)!r}], env=env)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "TMPDIR": str(tmpdir)})
    child = int(retry(lambda: marker.read_text().strip(), timeout=30))
    assert _leftovers(tmpdir)  # the secret file exists while the child runs
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert retry(lambda: _gone(child), timeout=20)
    assert _leftovers(tmpdir) == []


def test_every_started_child_is_registered_until_reaped():
    proc = command.start([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        assert proc in command.children()
        command.signal_children(signal.SIGTERM)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGTERM
        assert proc not in command.children()
    finally:
        command.stop(proc)


def test_a_password_on_the_command_line_is_warned_about():
    proc = run_pgtool("status", "--dsn", "postgresql://u:hunter2@127.0.0.1:1/x?connect_timeout=3", timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert "hunter2" not in proc.stderr + proc.stdout
    warnings = [json.loads(line) for line in proc.stderr.splitlines() if '"warning"' in line]
    assert any("ps" in w["event"] and "PGTOOL_DSN" in w["hint"] for w in warnings), proc.stderr


def test_sslpassword_reaches_neither_argv_nor_the_debug_log():
    from pgtool.obs.logging import capture_logs

    echo = "import sys; print(sys.argv[1:])"
    dsn = "host=db user=app sslpassword=k3y password=p4ss sslkey=/k"
    with capture_logs("debug") as logs, command.libpq_args(dsn) as (conninfo, env):
        result = command.run([sys.executable, "-c", echo, conninfo], env=env, capture_stdout=True)
    assert result.stdout is not None and "sslkey=/k" in result.stdout
    assert "k3y" not in result.stdout and "p4ss" not in result.stdout
    assert logs and not [e for e in logs if "k3y" in json.dumps(e) or "p4ss" in json.dumps(e)]
