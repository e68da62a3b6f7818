"""archive-wal into a LOCAL repository runs once per segment: it loads no obstore, no PyNaCl (unless the
repository is encrypted), and none of the heavy stdlib modules the stdlib store made unnecessary. And the
local store keeps every guarantee of the archive: duplicates, differences, damage."""

from __future__ import annotations

import os
import subprocess
import sys

from pgharness import run_pgtool
from pgtool.repo import wal_name as wal_object

# What the local path must not load: the object-store client, the crypto library (not encrypted), and
# the stdlib modules its old imports pulled in (dataclasses and its inspect/ast, pathlib, urllib.parse,
# datetime, typing, argparse, threading).
HEAVY = {
    "obstore",
    "nacl",
    "dataclasses",
    "inspect",
    "pathlib",
    "urllib.parse",
    "datetime",
    "typing",
    "argparse",
    "threading",
    "pgtool.repo.store",
    "pgtool.wal.repo_ahead",
    "pgtool.wal.repo_prefetch",
}


def _imports(*args: str, env: dict[str, str] | None = None) -> set[str]:
    """The modules loaded by one pgtool run (sys.modules at exit: -X importtime does not see an
    extension module loaded through its loader, as pgtool.repo.objformat loads zstd's)."""
    script = (
        "import atexit, sys\n"
        "out = sys.argv.pop(1)\n"
        "atexit.register(lambda: open(out, 'w').write('\\n'.join(sys.modules)))\n"
        "from pgtool.cli.entry import main\n"
        "main()\n"
    )
    out = os.path.join(os.path.dirname(args[1]) if len(args) > 1 else ".", f".modules-{os.getpid()}")
    proc = subprocess.run(
        [sys.executable, "-c", script, out, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(out) as f:
        names = set(f.read().split("\n"))
    os.unlink(out)
    return names


def test_archiving_into_a_local_repository_loads_only_what_it_needs(segment, work_dir, tmp_path):
    src, name = segment
    repo = tmp_path / "repo"
    loaded = _imports("archive-wal", str(src), name, "--repo", str(repo))
    assert "pgtool.repo.localfs" in loaded and "zstandard.backend_c" in loaded
    assert not HEAVY & loaded, HEAVY & loaded
    assert (repo / wal_object(name)).is_file()
    # the same call again, as a file URL (which urllib.parse decodes): an identical duplicate, exit 0
    again = _imports("archive-wal", str(src), name, "--repo", f"file://{repo}")
    assert not (HEAVY - {"urllib.parse"}) & again, HEAVY & again
    restored = _imports("restore-wal", name, str(work_dir / "r"), "--repo", str(repo))
    assert "obstore" not in restored and "nacl" not in restored
    assert (work_dir / "r").read_bytes() == src.read_bytes()


def test_an_encrypted_local_repository_loads_nacl(segment, tmp_path):
    src, name = segment
    key = tmp_path / "key"
    key.write_bytes(os.urandom(32))
    loaded = _imports(
        "archive-wal", str(src), name, "--repo", str(tmp_path / "repo"), "--repo-key-file", str(key)
    )
    assert "nacl.bindings" in loaded and "obstore" not in loaded
    stored = (tmp_path / "repo" / wal_object(name)).read_bytes()
    assert stored[5] & 2  # the object format's encrypted flag
    assert src.read_bytes()[64:4096] not in stored


def test_local_repository_keeps_the_archive_guarantees(segment, work_dir, tmp_path):
    src, name = segment
    repo = str(tmp_path / "repo")
    assert run_pgtool("archive-wal", str(src), name, "--repo", repo).returncode == 0
    obj = tmp_path / "repo" / wal_object(name)
    stored = obj.read_bytes()
    assert run_pgtool("archive-wal", str(src), name, "--repo", repo).returncode == 0  # identical: 0
    changed = work_dir / name
    data = bytearray(src.read_bytes())
    data[-1] ^= 0xFF  # same header, different content
    changed.write_bytes(bytes(data))
    differs = run_pgtool("archive-wal", str(changed), name, "--repo", repo)
    assert differs.returncode == 1 and "different content" in differs.stderr
    assert obj.read_bytes() == stored  # never overwritten
    damaged = bytearray(stored)
    damaged[len(damaged) // 2] ^= 0x10
    obj.write_bytes(bytes(damaged))
    restore = run_pgtool("restore-wal", name, str(work_dir / "out"), "--repo", repo)
    assert restore.returncode == 126 and not (work_dir / "out").exists()
