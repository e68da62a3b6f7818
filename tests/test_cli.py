"""The CLI surface: help, exit codes, one-line errors, lazy imports."""

from __future__ import annotations

import json
import subprocess
import sys

from pgharness import run_pgtool
from pgtool.cli.commands import COMMANDS

ALL_COMMANDS = [
    "backup",
    "basebackup",
    "archive-wal",
    "restore-wal",
    "verify",
    "recover",
    "bootstrap-extensions",
    "partitions",
    "refresh-mv",
    "lint",
    "bench",
    "demo",
]


def test_help_lists_every_command_with_one_line_help():
    proc = run_pgtool("--help")
    assert proc.returncode == 0, proc.stderr
    for name in ALL_COMMANDS:
        assert f" {name} " in proc.stdout, name
    registered = {name for name, _module, _help in COMMANDS}
    assert set(ALL_COMMANDS) <= registered


def test_python_dash_m_works():
    proc = subprocess.run([sys.executable, "-m", "pgtool", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert proc.stdout.startswith("pgtool ")


def test_unknown_command_is_usage_error():
    proc = run_pgtool("no-such-command")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def test_bad_log_level_is_usage_error():
    proc = run_pgtool("--log-level", "loud", "demo", "--help")
    assert proc.returncode == 2
    assert "log-level" in proc.stderr


def _complete(words: str) -> list[str]:
    """What bash completion offers for the last word of `words` (Typer's completion protocol)."""
    env = {
        "_PGTOOL_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split(" ")) - 1),
    }
    proc = run_pgtool(env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_choices_are_completed_listed_in_help_and_refused_before_the_run():
    assert _complete("pgtool status --format ") == ["text", "json"]
    assert _complete("pgtool lint --format ") == ["text", "json", "github", "sarif"]
    assert _complete("pgtool basebackup --compress server-") == ["server-lz4", "server-zstd"]
    assert _complete("pgtool --log-level w") == ["warning"]
    assert "<table|json|csv" in run_pgtool("report", "--help", env={"COLUMNS": "200"}).stdout.replace(
        "auto|", ""
    )
    for argv in (
        ["status", "--k8s", "maybe"],
        ["bench", "--format", "xml"],
        ["--log-format", "xml", "lint", "x"],
    ):
        proc = run_pgtool(*argv, env={"COLUMNS": "200"})
        assert proc.returncode == 2, argv
        lines = proc.stderr.splitlines()
        assert len(lines) == 1, proc.stderr  # one JSON line, like every pgtool error
        assert "is not one of" in json.loads(lines[0])["error"], argv
    # Case is ignored, as before.
    assert run_pgtool("--log-level", "DEBUG", "--log-format", "JSON", "lint", "--help").returncode == 0


def test_unreachable_server_is_one_clear_line_without_traceback(tmp_path):
    proc = run_pgtool(
        "backup",
        "--dest",
        str(tmp_path / "b"),
        env={"PGTOOL_DSN": "postgresql://nobody:s3cret@127.0.0.1:1/x"},
    )
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "s3cret" not in proc.stderr + proc.stdout
    event = json.loads(lines[0])
    assert event["event"] == "run failed"
    assert event["command"] == "backup"
    assert proc.returncode == 3
    assert not (tmp_path / "b").exists(), "nothing is created when the server cannot be reached"


def _imported_modules(*args: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pgtool", *args],
        capture_output=True,
        text=True,
    )
    modules = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            modules.add(line.rsplit("|", 1)[1].strip())
    assert modules, proc.stderr[-2000:]
    return modules


def test_help_imports_no_heavy_modules():
    modules = _imported_modules("--help")
    for heavy in ("psycopg", "pglast", "kubernetes", "structlog", "prometheus_client"):
        assert heavy not in modules, heavy


def test_archive_wal_imports_neither_typer_nor_psycopg(tmp_path):
    modules = _imported_modules("archive-wal", "--help")
    for heavy in ("typer", "click", "psycopg", "pglast", "structlog", "rich", "kubernetes"):
        assert heavy not in modules, heavy


def test_a_command_run_builds_only_that_command_and_imports_no_rich(tmp_path):
    """Start-up is paid on every CronJob run: no rich (help rendering only), no other command's module.

    sys.modules, not -X importtime: commands are imported with importlib, which importtime misses.
    """
    script = (
        "import sys\n"
        "from pgtool.cli.entry import main\n"
        f"code = main(['verify', '--backup-dir', {str(tmp_path / 'missing')!r}])\n"
        "print(code)\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    code, *modules = proc.stdout.splitlines()
    assert code == "1", proc.stderr
    assert "pgtool.cli.verify" in modules
    for heavy in ("rich", "structlog", "pglast", "pgtool.cli.lint", "pgtool.cli.backup", "pgtool.cli.demo"):
        assert heavy not in modules, heavy


def test_the_console_script_exit_runs_exit_handlers_and_flushes_output(tmp_path):
    """The console script skips interpreter teardown, not atexit handlers, buffered output or the code."""
    script = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('exit handler ran'))\n"
        "sys.stdout.write('buffered ')\n"
        "sys.argv = ['pgtool', 'verify', '--backup-dir', sys.argv[1]]\n"
        "from pgtool.cli.entry import main\n"
        "main()\n"
        "print('not reached')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "missing")], capture_output=True, text=True
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == "buffered exit handler ran\n"
    assert "does not exist" in proc.stderr


def test_the_console_script_exits_the_ordinary_way_so_finalizers_run(tmp_path):
    """No os._exit after a private atexit call: objects finalized at interpreter teardown still are."""
    marker = tmp_path / "finalized"
    script = (
        "import os, sys\n"
        f"fd = os.open({str(marker)!r}, os.O_WRONLY | os.O_CREAT, 0o600)\n"
        "class Finalized:\n"
        "    def __del__(self, write=os.write, fd=fd):  # bound now: module globals are gone by then\n"
        "        write(fd, b'yes')\n"
        "kept = Finalized()\n"
        "sys.argv = ['pgtool', '--version']\n"
        "from pgtool.cli.entry import main\n"
        "main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("pgtool ")
    assert marker.read_text() == "yes"
