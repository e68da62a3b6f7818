"""`pgtool demo` end to end: the best integration test there is, and its clean-up guarantees."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import psycopg

from pgharness import pgtool_argv, retry, rmtree, run_pgtool, server_writable_dir

STEPS = 12


def _demo_dirs() -> set[Path]:
    return set(Path("/tmp").glob("pgtool-demo-*"))


def _postgres_running_under(path: Path) -> bool:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "postgres" in cmdline and str(path) in cmdline:
            return True
    return False


def test_demo_walks_the_whole_lifecycle_and_leaves_nothing():
    before = _demo_dirs()
    proc = run_pgtool("demo", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ok_lines = [line for line in proc.stdout.splitlines() if line.startswith("ok ")]
    assert len(ok_lines) == STEPS, proc.stdout
    assert f"{STEPS}/{STEPS} steps passed" in proc.stdout
    pitr = next(line for line in ok_lines if "point-in-time recovery" in line)
    assert "'before the mistake' is there" in pitr and "'after the mistake' is not" in pitr
    lint = next(line for line in ok_lines if "lint" in line)
    assert "MIG002" in lint
    new_dirs = _demo_dirs() - before
    assert not new_dirs, new_dirs


def test_demo_keep_leaves_a_running_cluster_to_connect_to():
    keep = server_writable_dir("pgtool-keep-")
    rmtree(keep)
    try:
        proc = run_pgtool("demo", "--keep", str(keep), timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        dsn = re.search(r"connect: psql '([^']+)'", proc.stdout).group(1)
        with psycopg.connect(dsn) as conn:
            notes = [r[0] for r in conn.execute("SELECT note FROM demo_pitr ORDER BY at")]
        assert notes == ["before the mistake", "after the mistake"]
        stop = re.search(r"stop:\s+(.+)", proc.stdout).group(1).split()
        subprocess.run(stop, check=True, capture_output=True)
        assert not _postgres_running_under(keep)
    finally:
        for pid_file in keep.glob("*/data/postmaster.pid"):
            pid = int(pid_file.read_text().split()[0])
            os.kill(pid, signal.SIGQUIT)
        rmtree(keep)


def test_demo_interrupted_cleans_up():
    before = _demo_dirs()
    proc = subprocess.Popen(
        [*pgtool_argv(), "demo"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()  # the cluster has started once its step line is out
    assert first.startswith("ok "), first + proc.stderr.read()
    work = retry(lambda: _demo_dirs() - before, timeout=10).pop()
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert not work.exists()
    time.sleep(0.5)
    assert not _postgres_running_under(work)
