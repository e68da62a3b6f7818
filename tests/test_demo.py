"""`pgtool demo` end to end: the best integration test there is, and its clean-up guarantees."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest

from installcopy import copy_installation
from pgharness import pgtool_argv, rmtree, run_pgtool, server_writable_dir
from pgtool.repo import RepoKeyError, open_repository

STEPS = 13


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


def test_demo_walks_the_whole_lifecycle_from_a_private_checkout_and_leaves_nothing(tmp_path):
    """The README's first command where a newcomer runs it: as root, in a checkout under /root (0700).
    The server user can reach neither the venv's pgtool nor its embedded PostgreSQL, yet the demo's
    WAL is archived and restored through pgtool (its WAL bundle), and PITR and the drills pass."""
    pgtool_script = copy_installation(tmp_path / "home", 0o700)  # as /root is
    tmp = server_writable_dir("pgtool-demo-tmp-")  # the demo's work directory, to check it is gone
    cache = Path(tempfile.mkdtemp(prefix="pgtool-cache-", dir="/tmp"))  # ours, readable by all
    cache.chmod(0o755)
    try:
        env = {**os.environ, "TMPDIR": str(tmp), "PGTOOL_CACHE_DIR": str(cache)}
        env.pop("PGTOOL_DSN", None)
        proc = subprocess.run(
            [str(pgtool_script), "demo"], capture_output=True, text=True, env=env, timeout=600, cwd="/"
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        ok_lines = [line for line in proc.stdout.splitlines() if line.startswith("ok ")]
        assert len(ok_lines) == STEPS, proc.stdout
        assert f"{STEPS}/{STEPS} steps passed" in proc.stdout
        pitr = next(line for line in ok_lines if "point-in-time recovery" in line)
        assert "'before the mistake' is there" in pitr and "'after the mistake' is not" in pitr
        lint = next(line for line in ok_lines if "lint" in line)
        assert "MIG002" in lint
        start = next(line for line in ok_lines if "start PostgreSQL" in line)
        # as root the server user runs the WAL bundle, with the repository packages copied beside it
        assert "(encrypted at rest, key repo.key)" in start, start
        assert not list(tmp.iterdir())
        assert not _postgres_running_under(tmp)
        if os.geteuid() == 0:  # the server ran as another user: through the bundle and the mirror
            assert list((cache / "wal").glob("pgtool-wal-*.pyz")), proc.stderr
            assert list((cache / "pg").glob("postgresql-18*")), proc.stderr
    finally:
        rmtree(tmp)
        rmtree(cache)


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
        start = next(line for line in proc.stdout.splitlines() if "start PostgreSQL" in line)
        assert f"backups in repository {keep}/repo (encrypted at rest, key repo.key)" in start, start
        _assert_encrypted_repository(keep, proc.stdout)
        stop = re.search(r"stop:\s+(.+)", proc.stdout).group(1).split()
        subprocess.run(stop, check=True, capture_output=True)
        assert not _postgres_running_under(keep)
    finally:
        for pid_file in keep.glob("*/data/postmaster.pid"):
            pid = int(pid_file.read_text().split()[0])
            os.kill(pid, signal.SIGQUIT)
        rmtree(keep)


def _assert_encrypted_repository(keep: Path, stdout: str) -> None:
    """WAL, the base backup, dumps and the drills' evidence in one repository, unreadable without its key."""
    repo, key = keep / "repo", keep / "repo.key"
    assert f"backups: --repo {repo} --repo-key-file {key}" in stdout
    assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_bytes()) == 32
    assert open_repository(str(repo), key_file=key).encrypted
    with pytest.raises(RepoKeyError):
        open_repository(str(repo), key_file=None, environ={})
    kinds = {p.relative_to(repo).parts[0] for p in repo.rglob("*") if p.is_file()}
    assert {"wal", "base", "dumps", "evidence"} <= kinds, kinds
    for stored in (p for p in repo.rglob("*") if p.is_file() and p.name != "pgtool.repo.json"):
        data = stored.read_bytes()
        assert data[:4] == b"PGTR" and data[5] & 2, f"{stored} is not encrypted"


# `trap '' INT` leaves SIGINT ignored, as a shell script's `cmd &` does: pgtool must still end on it.
IGNORING_SIGINT = ["bash", "-c", 'trap "" INT; exec "$@"', "-"]


@pytest.mark.parametrize("lines_before", [1, 3], ids=["after-start", "during-a-child-pgtool"])
def test_demo_interrupted_exits_130_and_cleans_up(lines_before):
    # A TMPDIR of its own: the demo's work directory and its children's throwaway clusters land there.
    tmp = server_writable_dir("pgtool-demo-tmp-")
    try:
        _interrupt_demo(tmp, lines_before)
    finally:
        rmtree(tmp)


def _interrupt_demo(tmp: Path, lines_before: int) -> None:
    proc = subprocess.Popen(
        [*IGNORING_SIGINT, *pgtool_argv(), "demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp)},
    )
    assert proc.stdout is not None
    for _ in range(lines_before):  # a step line is out once that step has finished
        line = proc.stdout.readline()
        assert line.startswith("ok "), line + proc.stderr.read()
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert '"error": "interrupted"' in err.splitlines()[-1]
    assert not list(tmp.iterdir())  # the demo's work directory and any child's cluster are gone
    assert not _postgres_running_under(tmp)
