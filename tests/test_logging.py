"""pgtool's structured log lines: shape, context, levels, redaction, tracebacks."""

from __future__ import annotations

import io
import json
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
    pglog._CONFIG.threshold = None
    pglog._CONFIG.stream = None


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
