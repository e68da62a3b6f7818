"""pgtool's structured log lines: shape, context, levels, redaction, tracebacks."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pgtool.obs import logging as pglog


@pytest.fixture
def captured():
    """Log lines configured into a buffer; logging is reset to unconfigured afterwards."""
    buffer = io.StringIO()
    yield buffer
    pglog.reset()


def _events(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_json_lines_carry_context_fields_and_the_standard_keys(captured):
    pglog.configure("info", json=True, stream=captured)
    log = pglog.get_logger(command="backup").bind(database="shop")
    log.info("dumped", size=12, path=Path("/b/shop.dump"), tables=["a", "b"], ok=True, ratio=0.5, gone=None)
    (event,) = _events(captured)
    assert event["event"] == "dumped" and event["level"] == "info"
    assert event["timestamp"].endswith("Z") and "T" in event["timestamp"]
    assert (event["command"], event["database"], event["size"]) == ("backup", "shop", 12)
    assert event["path"] == "/b/shop.dump" and event["tables"] == ["a", "b"]
    assert (event["ok"], event["ratio"], event["gone"]) == (True, 0.5, None)


def test_levels_below_the_threshold_are_dropped(captured):
    pglog.configure("warning", json=True, stream=captured)
    log = pglog.get_logger()
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    assert [e["event"] for e in _events(captured)] == ["w", "e"]


def test_passwords_in_dsns_never_reach_a_line(captured):
    pglog.configure("debug", json=True, stream=captured)
    pglog.get_logger().bind(dsn="postgresql://app:s3cret@db/shop").error(
        "failed for host=db password=hunter2 user=x", detail="postgres://u:pw123@h/d"
    )
    line = captured.getvalue()
    assert "s3cret" not in line and "hunter2" not in line and "pw123" not in line
    assert "db/shop" in line


def test_exception_text_has_the_traceback_but_no_locals(captured):
    pglog.configure("debug", json=True, stream=captured)

    def fails(password: str) -> None:
        raise ValueError("broken")

    secret = "".join(["top", "secret"])  # not in the source lines a traceback quotes
    try:
        fails(secret)
    except ValueError:
        pglog.get_logger().debug("traceback", exc_info=True)
    (event,) = _events(captured)
    assert "ValueError: broken" in event["exception"] and "fails" in event["exception"]
    assert "topsecret" not in event["exception"]


def test_console_lines_are_key_value(captured):
    pglog.configure("info", json=False, stream=captured)
    pglog.get_logger().info("run finished", command="verify", error="two words", exit_code=0)
    line = captured.getvalue().strip()
    assert "[info     ] run finished" in line
    assert "command=verify" in line and 'error="two words"' in line and "exit_code=0" in line
    assert "\x1b[" not in line  # no colours when the stream is not a terminal


def test_unconfigured_library_use_logs_warnings_only():
    script = (
        "from pgtool.obs.logging import get_logger\n"
        "get_logger().info('quiet')\n"
        "get_logger().warning('loud', n=1)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGTOOL_LOG")}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert proc.returncode == 0
    (line,) = proc.stderr.splitlines()
    assert json.loads(line)["event"] == "loud"
    env["PGTOOL_LOG_LEVEL"] = "info"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert [json.loads(x)["event"] for x in proc.stderr.splitlines()] == ["quiet", "loud"]


def test_console_lines_cannot_be_forged_by_names_holding_newlines(captured):
    pglog.configure("info", json=False, stream=captured)
    forged = "x\n2026-01-01T00:00:00.000000Z [error    ] run failed      command=backup"
    pglog.get_logger().info("dumped", database=forged, table="t\rx")
    pglog.get_logger().info(f"event {forged}")
    lines = captured.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert "\\u000a" in lines[0] or "\\n" in lines[0]


def test_capture_logs_collects_redacted_events_and_restores_the_configuration(captured):
    pglog.configure("warning", json=True, stream=captured)
    with pglog.capture_logs() as logs:
        pglog.get_logger(command="backup").debug("connecting", dsn="postgresql://u:hunter2@db/x")
    assert logs == [
        {"command": "backup", "dsn": "postgresql://u:***@db/x", "event": "connecting", "level": "debug"}
    ]
    pglog.get_logger().info("dropped")  # below the restored threshold
    pglog.get_logger().warning("written")
    assert [e["event"] for e in _events(captured)] == ["written"]


def test_standard_logging_records_become_pgtool_events_redacted():
    with pglog.capture_logs("info") as logs:
        logging.getLogger("psycopg.pool").warning("cannot reach %s", "host=db password=hunter2")
        logging.getLogger("urllib3").debug("below the threshold")
        try:
            raise OSError("reset by peer")
        except OSError:
            logging.getLogger("kubernetes.client").exception("request failed")
    events = [(e["logger"], e["level"], e["event"]) for e in logs]
    assert events[:2] == [
        ("psycopg.pool", "warning", "cannot reach host=db password=***"),
        ("kubernetes.client", "error", "request failed"),
    ]
    assert logs[1]["error"] == "OSError: reset by peer" and "exception" not in logs[1]


def test_library_records_are_json_lines_in_a_run():
    script = (
        "import logging\n"
        "from pgtool.cli.runner import run_command\n"
        "def body(report):\n"
        "    logging.getLogger('urllib3.connectionpool').warning('Retrying %s', 'postgresql://u:pw9@h/d')\n"
        "    import warnings; warnings.warn('old API', UserWarning)\n"
        "run_command('unit', body)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stderr.splitlines()]  # every line is JSON
    assert events[0]["logger"] == "urllib3.connectionpool" and events[0]["level"] == "warning"
    assert "pw9" not in proc.stderr
    assert events[1]["logger"] == "py.warnings" and "old API" in events[1]["event"]
    assert events[-1]["event"] == "run finished"
