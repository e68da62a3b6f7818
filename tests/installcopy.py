"""A copy of this pgtool installation in another directory, for tests about who can reach what.

A venv from the same base interpreter whose site-packages are hard links of ours (copies across
filesystems), with pgtool's sources copied and the editable hook pointed at them. Used for README command
1 in a checkout under /root (mode 0700), and for running pgtool as the server user (as the CronJobs do)
when the checkout is out of that user's reach.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pgtool


def _link_tree(src: Path, dst: Path) -> None:
    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, symlinks=True, copy_function=link, ignore=shutil.ignore_patterns("__pycache__"))


def copy_installation(root: Path, mode: int = 0o700) -> Path:
    """Install a copy of this pgtool under `root` (created with `mode`); returns its `pgtool` script."""
    root.mkdir(mode=mode)
    root.chmod(mode)
    venv = root / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    ours = Path(sysconfig.get_paths()["purelib"])
    theirs = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
    for entry in ours.iterdir():
        if entry.name.startswith(("_editable_impl_pgtool", "__editable__", "pgtool-")):
            continue
        if entry.is_dir():
            _link_tree(entry, theirs / entry.name)
        else:
            shutil.copy2(entry, theirs / entry.name)
    _link_tree(Path(pgtool.__file__).parent, root / "src" / "pgtool")
    (theirs / "pgtool-copy.pth").write_text(f"{root / 'src'}\n")
    script = venv / "bin" / "pgtool"
    script.write_text(
        f"#!{venv}/bin/python\nimport sys\nfrom pgtool.cli.entry import main\nsys.exit(main())\n"
    )
    script.chmod(0o755)
    return script
