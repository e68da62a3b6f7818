"""Shared plumbing on real components: binaries, the command wrapper, clusters, connections, metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pgharness import binaries_for, retry
from pgtool.errors import BinaryNotFoundError, ConnectError, ExternalCommandError
from pgtool.obs.metrics import RunReport, push_run_result
from pgtool.pg import binaries, command
from pgtool.pg.conn import connect


def test_both_supported_majors_are_found():
    assert binaries_for(15).major == 15
    assert binaries_for(18).major == 18
    assert binaries.embedded_bindir() is not None


def test_client_tools_fit_the_server_version():
    assert binaries.for_server(15).major >= 15
    # No PostgreSQL 16 here: a 16 server needs tools of 16 or newer, so 18 is picked.
    assert binaries.for_server(16).major == 18


def test_explicit_bindir_must_hold_postgres(tmp_path):
    with pytest.raises(BinaryNotFoundError, match=str(tmp_path)):
        binaries.find(str(tmp_path))


def test_missing_binary_names_the_fix():
    with pytest.raises(BinaryNotFoundError) as err:
        binaries_for(15).path("pg_no_such_tool")
    assert "--pg-bindir" in err.value.one_line()


def test_command_failure_carries_stderr_tail():
    with pytest.raises(ExternalCommandError) as err:
        command.run(
            [sys.executable, "-c", "import sys; print('boom happened', file=sys.stderr); sys.exit(3)"]
        )
    assert err.value.returncode == 3
    assert "boom happened" in err.value.message


def test_command_redacts_secrets_in_stderr():
    with pytest.raises(ExternalCommandError) as err:
        command.run([sys.executable, "-c", "import sys; sys.exit('bad dsn postgresql://u:topsecret@h/db')"])
    assert "topsecret" not in err.value.message + err.value.stderr_tail


def test_command_progress_lines_stay_out_of_the_error_and_a_failing_callback_cannot_block():
    script = (
        "import sys\n"
        "for i in range(2000): print(f'tool: step {i}', file=sys.stderr)\n"
        "print('tool: error: it broke', file=sys.stderr)\n"
        "sys.exit(1)\n"
    )
    seen: list[str] = []

    def on_progress(line: str) -> bool:
        seen.append(line)
        if line == "tool: step 5":
            raise RuntimeError("a bug in the callback")
        return line.startswith("tool: step")

    with pytest.raises(ExternalCommandError) as err:
        command.run([sys.executable, "-c", script], on_progress=on_progress, timeout=60)
    assert len(seen) == 2001  # the reader kept draining stderr after the callback raised
    assert err.value.message.endswith("tool: error: it broke")
    assert err.value.stderr_tail.splitlines() == ["tool: step 5", "tool: error: it broke"]


def test_command_missing_executable():
    with pytest.raises(BinaryNotFoundError):
        command.run(["/nonexistent/pg_dump", "--version"])


def test_libpq_args_moves_password_to_a_0600_file_removed_afterwards():
    with command.libpq_args("postgresql://app:s3cret@127.0.0.1:5432/shop") as (conninfo, env):
        assert "s3cret" not in conninfo
        assert "dbname=shop" in conninfo
        path = Path(env["PGSERVICEFILE"])
        assert path.stat().st_mode & 0o777 == 0o600
        assert "s3cret" in path.read_text()
    assert not path.exists()


def test_sigterm_is_forwarded_to_the_child(tmp_path):
    marker = tmp_path / "child.pid"
    script = textwrap.dedent(
        f"""
        import sys
        from pgtool.pg import command
        try:
            command.run([sys.executable, "-c",
                "import os, time; open({str(marker)!r}, 'w').write(str(os.getpid())); time.sleep(60)"])
        except SystemExit:
            raise
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    child_pid = int(retry(lambda: marker.read_text().strip(), timeout=20))
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)
    assert proc.returncode != 0

    def child_gone() -> bool:
        try:
            os.kill(child_pid, 0)
        except ProcessLookupError:
            return True
        return False

    assert retry(child_gone, timeout=10)


@pytest.mark.all_versions
def test_cluster_runs_with_pg_stat_statements_preloaded(cluster, pg_major):
    with cluster.connect() as conn:
        assert conn.info.server_version // 10000 == pg_major
        libs = conn.execute("SHOW shared_preload_libraries").fetchone()[0]
        assert "pg_stat_statements" in libs
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        if os.geteuid() == 0:  # read while the connection, hence the backend, still lives
            status = Path(f"/proc/{pid}/status").read_text()
            uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
            assert uid_line.split()[1] != "0", "postgres must not run as root"


@pytest.mark.all_versions
def test_fresh_database_per_test(database, pg_major):
    database.execute("CREATE TABLE t (id int)")
    database.execute("INSERT INTO t SELECT generate_series(1, 5)")
    assert database.execute("SELECT count(*) FROM t") == [(5,)]


def test_connect_refused_is_connect_error():
    with pytest.raises(ConnectError) as err:
        connect("postgresql://nobody:pw@127.0.0.1:1/x", connect_timeout=3)
    assert err.value.exit_code == 3
    assert "pw@" not in err.value.one_line()
    assert "127.0.0.1:1" in err.value.one_line()
    assert "server running" in err.value.one_line()


def test_wrong_database_is_connect_error(cluster):
    with pytest.raises(ConnectError, match="does not exist"):
        connect(cluster.dsn("no_such_db"))


def test_metrics_keep_last_success_across_a_failure(pushgateway):
    report = RunReport()
    report.gauge("pgtool_test_size_bytes", "size", 42, database="shop")
    assert push_run_result(pushgateway.url, "unit", success=True, duration_seconds=1.5, report=report)
    job = {"job": "pgtool-unit"}
    assert pushgateway.samples("pgtool_last_run_success", **job) == [1.0]
    first_success = pushgateway.samples("pgtool_last_success_timestamp_seconds", **job)[0]
    assert pushgateway.samples("pgtool_test_size_bytes", database="shop", **job) == [42.0]
    time.sleep(0.01)
    assert push_run_result(pushgateway.url, "unit", success=False, duration_seconds=0.5)
    assert pushgateway.samples("pgtool_last_run_success", **job) == [0.0]
    assert pushgateway.samples("pgtool_last_success_timestamp_seconds", **job) == [first_success]
    assert pushgateway.samples("pgtool_last_run_duration_seconds", **job) == [0.5]


def test_metrics_push_failure_is_not_fatal():
    assert push_run_result("http://127.0.0.1:1", "unit", success=True, duration_seconds=1) is False


def test_json_logs_redact_and_summarise(tmp_path):
    script = textwrap.dedent(
        """
        from pgtool.cli.runner import run_command
        from pgtool.obs.logging import get_logger
        def body(report):
            get_logger().info("connecting", dsn="postgresql://u:hunter2@db/x")
        run_command("unit", body)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stderr.splitlines()]
    assert "hunter2" not in proc.stderr
    assert events[-1]["event"] == "run finished"
    assert events[-1]["command"] == "unit"
    assert events[-1]["outcome"] == "success"
    assert "duration_s" in events[-1]


def test_unexpected_error_is_one_line_and_traceback_only_at_debug():
    script = "from pgtool.cli.runner import run_command\nrun_command('unit', lambda r: 1 / 0)\n"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "ZeroDivisionError" in proc.stderr
    debug = subprocess.run(
        [sys.executable, "-c", "from pgtool.cli.state import STATE\nSTATE.log_level='debug'\n" + script],
        capture_output=True,
        text=True,
    )
    assert "ZeroDivisionError" in debug.stderr and "exception" in debug.stderr
