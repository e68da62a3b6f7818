"""The CLI surface must not drift by accident: `pgtool --help` against a committed golden copy.

After an intended change, regenerate with `PGTOOL_UPDATE_GOLDEN=1 pytest tests/test_help_golden.py`
and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pgharness import run_pgtool
from pgtool.cli.commands import COMMANDS

GOLDEN = Path(__file__).parent / "golden" / "pgtool-help.txt"
FIXED_TERMINAL = {"COLUMNS": "100", "TERM": "dumb", "NO_COLOR": "1"}


def _normalised(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines()) + "\n"


def test_top_level_help_matches_golden_copy():
    proc = run_pgtool("--help", env=FIXED_TERMINAL)
    assert proc.returncode == 0, proc.stderr
    text = _normalised(proc.stdout)
    if os.environ.get("PGTOOL_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "pgtool --help changed: regenerate the golden copy if intended"


@pytest.mark.parametrize("command", [name for name, _module, _help in COMMANDS])
def test_every_command_help_has_an_example(command):
    proc = run_pgtool(command, "--help", env=FIXED_TERMINAL)
    assert proc.returncode == 0, proc.stderr
    assert "example" in proc.stdout.lower(), f"pgtool {command} --help shows no example"
