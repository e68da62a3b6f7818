"""pgtool.wal works on its own: archive-wal and restore-wal with only pgtool/__init__.py, pgtool/wal/ and
pgtool/durable_write.py (pgtool's one durable-write helper, stdlib only) on the path and no site-packages
(how it is bundled for the server user), checksums included."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pgtool

RUN = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); "
    "from pgtool.wal.fastcli import main; sys.exit(main(sys.argv[1:]))"
)


def test_archive_and_restore_with_nothing_but_the_wal_package(segment, archive_dir, work_dir):
    src, name = segment
    lib = work_dir / "lib"
    (lib / "pgtool").mkdir(parents=True)
    package = Path(pgtool.__file__).parent
    shutil.copy(package / "__init__.py", lib / "pgtool" / "__init__.py")
    shutil.copy(package / "durable_write.py", lib / "pgtool" / "durable_write.py")
    shutil.copytree(package / "wal", lib / "pgtool" / "wal", ignore=shutil.ignore_patterns("__pycache__"))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        # -I -S: no user site, no site-packages, no PYTHONPATH: only the copied package is importable.
        return subprocess.run(
            [sys.executable, "-I", "-S", "-c", RUN, str(lib), *args], capture_output=True, text=True
        )

    archived = run("archive-wal", str(src), name, "--archive-dir", str(archive_dir))
    assert archived.returncode == 0, archived.stderr
    assert (archive_dir / f"{name}.sha256").exists()
    dest = work_dir / "restored"
    restored = run("restore-wal", name, str(dest), "--archive-dir", str(archive_dir))
    assert restored.returncode == 0, restored.stderr
    assert dest.read_bytes() == src.read_bytes()
    absent = run("restore-wal", "00000009.history", str(dest), "--archive-dir", str(archive_dir))
    assert absent.returncode == 1
