"""`pgtool check` against a real primary archiving through `pgtool archive-wal`: a local repository,
moto's S3 server, and an archive directory pass end to end; a broken archive_command, archive_mode off,
a wrong repository key and a server that is down each give the documented exit code and one line naming
the problem and its fix.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pgharness import binaries_for, rmtree, run_pgtool, server_writable_dir
from pgtool.pg.cluster import LocalCluster, free_port
from pgtool.repo import open_repository
from pgtool.repo import wal_name as wal_object
from repo_backends import make_backend

PGTOOL = Path(sys.executable).parent / "pgtool"


@pytest.fixture(scope="module")
def primary(s3_server: Any) -> Iterator[tuple[LocalCluster, Path]]:
    """A PostgreSQL 15 primary with archive_mode on (it needs a restart to change) and the S3 server's
    credentials in its environment, as a Secret would set them; each test points archive_command."""
    work = server_writable_dir("pgtool-check-")
    cluster = LocalCluster(
        binaries_for(15),
        work / "cluster",
        settings={"archive_mode": "on", "archive_command": "", "archive_timeout": "60"},
    )
    with pytest.MonkeyPatch.context() as mp:
        for key, value in s3_server.env().items():
            if key.startswith("AWS_"):
                mp.setenv(key, value)
        cluster.init().start()
    try:
        yield cluster, work
    finally:
        cluster.stop()
        rmtree(work)


def archive_to(cluster: LocalCluster, destination: str) -> None:
    cluster.write_settings({"archive_command": f"{PGTOOL} archive-wal %p %f {destination}"})
    cluster.reload()


def check(cluster_dsn: str, *args: str, env: dict[str, str] | None = None) -> tuple[Any, dict[str, Any]]:
    proc = run_pgtool("check", "--dsn", cluster_dsn, *args, "--format", "json", env=env)
    try:
        out = json.loads(proc.stdout)
    except json.JSONDecodeError:
        out = {}
    return proc, out


def states(out: dict[str, Any]) -> dict[str, str]:
    return {c["check"]: c["state"] for c in out["checks"]}


def line_of(out: dict[str, Any], name: str) -> str:
    return next(f"{c['message']} -> {c['fix']}" for c in out["checks"] if c["check"] == name)


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_check_proves_archiving_into_a_repository(kind, primary, request, tmp_path, pushgateway):
    cluster, work = primary
    if kind == "local":
        url, env = str(work / f"repo-{kind}"), {}
    else:
        backend = make_backend(kind, request, tmp_path)
        url, env = backend.url, backend.env
    archive_to(cluster, f"--repo {shlex.quote(url)}")

    proc, out = check(cluster.dsn(), "--repo", url, "--pushgateway", pushgateway.url, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr + cluster.log_tail(20)
    found = states(out)
    # A fresh repository: archive-wal created it during the end-to-end check, which then probed it.
    for name in ("repository", "archive_mode", "wal_level", "archive_command", "system identifier"):
        assert found[name] == "ok", line_of(out, name)
    assert found["end-to-end"] == "ok"
    assert out["ok"] is True and out["archive_seconds"] > 0
    assert out["restore_point"].startswith("pgtool-check-")
    repo = open_repository(url, environ=env or None)
    assert repo.exists(wal_object(out["segment"]))
    assert repo.list("check/") == []  # the probe object was deleted
    assert pushgateway.samples("pgtool_check_ok") == [1.0]
    assert pushgateway.samples("pgtool_check_archive_seconds")[0] > 0

    text = run_pgtool("check", "--dsn", cluster.dsn(), "--repo", url, env=env)
    assert text.returncode == 0, text.stdout + text.stderr
    assert "WAL archiving works end to end" in text.stdout
    assert any(line.startswith("ok") and "end-to-end" in line for line in text.stdout.splitlines())


def test_check_proves_archiving_into_a_directory(primary):
    cluster, work = primary
    archive_dir = work / "archive"
    archive_dir.mkdir()
    archive_dir.chmod(0o777)
    archive_to(cluster, f"--archive-dir {shlex.quote(str(archive_dir))}")
    proc, out = check(cluster.dsn(), "--archive-dir", str(archive_dir), "--timeout", "60")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert states(out)["end-to-end"] == "ok" and states(out)["archive directory"] == "ok"
    assert (archive_dir / out["segment"]).exists()
    assert not [p for p in archive_dir.iterdir() if "check" in p.name]  # the probe was removed


def test_archive_command_elsewhere_is_a_warning_and_a_wrong_key_a_problem(primary, tmp_path):
    cluster, work = primary
    archive_to(cluster, f"--repo {shlex.quote(str(work / 'repo-elsewhere'))}")
    right, wrong = tmp_path / "right.key", tmp_path / "wrong.key"
    right.write_bytes(b"the right passphrase")
    wrong.write_bytes(b"another passphrase")
    url = str(tmp_path / "encrypted")
    open_repository(url, key_file=right, create=True)

    proc, out = check(cluster.dsn(), "--repo", url, "--repo-key-file", str(wrong), "--timeout", "5")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    found = states(out)
    assert found["repository"] == "problem"
    assert "wrong key" in line_of(out, "repository")
    assert found["archive_command"] == "warning"
    assert "not to the repository checked here" in line_of(out, "archive_command")
    assert found["end-to-end"] == "skipped"


def test_archive_mode_off_is_a_problem_line(pg15):
    archive = server_writable_dir("pgtool-check-off-")
    try:
        proc, out = check(pg15.dsn(), "--archive-dir", str(archive), "--timeout", "5")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert states(out)["archive_mode"] == "problem"
        assert "ALTER SYSTEM SET archive_mode = on" in line_of(out, "archive_mode")
        assert states(out)["end-to-end"] == "skipped"  # known to fail: not waited for
    finally:
        rmtree(archive)


def test_a_role_that_may_not_switch_wal_gets_the_grant_named(primary):
    cluster, work = primary
    archive_dir = work / "archive-grant"
    archive_dir.mkdir()
    archive_dir.chmod(0o777)
    archive_to(cluster, f"--archive-dir {shlex.quote(str(archive_dir))}")
    with cluster.connect(autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS check_monitor")
        conn.execute("CREATE ROLE check_monitor LOGIN")
    proc, out = check(cluster.dsn(user="check_monitor"), "--archive-dir", str(archive_dir), "--timeout", "5")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = line_of(out, "end-to-end")
    assert "GRANT EXECUTE ON FUNCTION pg_catalog.pg_create_restore_point(text) TO check_monitor" in line
    assert "GRANT EXECUTE ON FUNCTION pg_catalog.pg_switch_wal() TO check_monitor" in line
    assert states(out)["archive_mode"] == "ok"  # the settings are still checked for this role


def test_server_down_exits_3(tmp_path):
    dsn = f"host=127.0.0.1 port={free_port()} dbname=postgres connect_timeout=3"
    proc = run_pgtool("check", "--dsn", dsn, "--archive-dir", str(tmp_path))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "cannot connect" in proc.stderr


def test_usage_errors_exit_2(tmp_path):
    both = run_pgtool("check", "--repo", str(tmp_path), "--archive-dir", str(tmp_path))
    assert both.returncode == 2, both.stderr
    assert "exactly one" in both.stderr
    assert run_pgtool("check", "--archive-dir", str(tmp_path), "--timeout", "0").returncode == 2


def test_a_broken_archive_command_is_named_within_the_timeout(primary, request, tmp_path):
    """Last in the module: it leaves the archiver failing (the next tests' switches would wake it)."""
    cluster, _work = primary
    backend = make_backend("s3", request, tmp_path)
    backend.open()  # the repository checked exists; the server archives somewhere else
    missing = f"s3://pgtool-no-such-bucket-{time.time_ns()}/prefix"
    archive_to(cluster, f"--repo {shlex.quote(missing)}")
    start = time.monotonic()
    proc, out = check(cluster.dsn(), "--repo", backend.url, "--timeout", "45", env=backend.env)
    assert time.monotonic() - start < 60
    assert proc.returncode == 1, proc.stdout + proc.stderr
    found = states(out)
    assert found["repository"] == "ok"
    assert found["archive_command"] == "warning"  # it points elsewhere
    assert found["end-to-end"] == "problem"
    line = line_of(out, "end-to-end")
    assert f"last_failed_wal = {out['segment']}" in line, line
    assert "last_failed_time" in line and "archive_command's error in the server log" in line
