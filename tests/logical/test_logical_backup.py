"""`pgtool backup` against a real PostgreSQL: dumps, manifests, failures, retention, locking, metrics."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
from datetime import UTC, datetime

import pytest
from logical_helpers import backup, clone_dump, newest_dump, sigterm_while_running

from pgharness import pgtool_argv
from pgtool.logical import dumps
from pgtool.logical.dump_manifest import read_checksum, sha256_file


@pytest.mark.all_versions
def test_backup_dumps_several_databases_with_manifest_and_checksum(cluster, make_db, tmp_path):
    small, large = make_db(rows=10), make_db(rows=5000)
    with large.connect() as conn:
        conn.execute('CREATE SCHEMA "Odd Schema"')
        conn.execute('CREATE TABLE "Odd Schema"."Mixed Case" AS SELECT g FROM generate_series(1, 7) g')
        conn.execute("CREATE TABLE parted (id int) PARTITION BY RANGE (id)")
        conn.execute("CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100)")
        conn.execute("INSERT INTO parted SELECT g FROM generate_series(0, 41) g")

    proc = backup(cluster, tmp_path, small.name, large.name, extra=("--jobs", "2"))

    assert proc.returncode == 0, proc.stderr
    listing = dumps.list_dumps(tmp_path)
    assert set(listing) == {small.name, large.name}
    for db, rows in ((small, 10), (large, 5000)):
        (info,) = listing[db.name]
        assert info.path.name == f"{db.name}-{info.stamp}.dump"
        assert read_checksum(dumps.checksum_path(info.path)) == sha256_file(info.path)
        manifest = info.manifest
        assert manifest["database"] == db.name
        assert manifest["sha256"] == sha256_file(info.path)
        assert manifest["dump_size_bytes"] == info.size_bytes > 0
        assert manifest["server_version_num"] // 10000 == cluster.binaries.major
        assert manifest["duration_seconds"] >= 0
        counts = {(t["schema"], t["name"]): t["rows"] for t in manifest["tables"]}
        assert counts[("public", "items")] == rows
    large_counts = {(t["schema"], t["name"]): t["rows"] for t in listing[large.name][0].manifest["tables"]}
    assert large_counts[("Odd Schema", "Mixed Case")] == 7
    assert large_counts[("public", "parted_1")] == 42
    assert ("public", "parted") not in large_counts  # a partitioned parent holds no rows of its own
    # a real custom-format dump: pg_restore reads its table of contents
    toc = subprocess.run(
        [cluster.binaries.path("pg_restore"), "--list", str(listing[large.name][0].path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "TABLE DATA public items" in toc
    assert not list(tmp_path.glob(f"{small.name}/.*.partial"))
    assert small.name in proc.stdout and large.name in proc.stdout


def test_counts_are_taken_in_the_dumps_snapshot(cluster, make_db, tmp_path):
    """Rows inserted while the dump runs appear in neither the dump nor the manifest's counts."""
    db = make_db(rows=200_000)
    argv = [*pgtool_argv(), "backup", "--dsn", cluster.dsn(), "--dest", str(tmp_path), "--database", db.name]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    inserted = 0
    while proc.poll() is None and inserted < 200:
        db.execute("INSERT INTO items VALUES (%s, 'late')", [1_000_000 + inserted])
        inserted += 1
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    info = dumps.list_dumps(tmp_path)[db.name][-1]
    manifest_rows = {t["name"]: t["rows"] for t in info.manifest["tables"]}["items"]
    restored = subprocess.run(
        [cluster.binaries.path("pg_restore"), "--data-only", "--table=items", "--file=-", str(info.path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    copy_block = restored.split("FROM stdin;\n", 1)[1].split("\n\\.\n", 1)[0]
    assert manifest_rows == len(copy_block.splitlines())
    assert 200_000 <= manifest_rows <= 200_000 + inserted


def test_one_failing_database_does_not_stop_the_others(cluster, login_role, make_db, tmp_path):
    good, bad = make_db(rows=20), make_db(rows=20)
    good.execute(f'GRANT SELECT ON items TO "{login_role}"')
    bad.execute("CREATE TABLE secret (x int)")  # owned by postgres, no grant: permission denied
    bad.execute(f'GRANT SELECT ON items TO "{login_role}"')

    proc = backup(
        cluster, tmp_path, bad.name, good.name, extra=("--jobs", "2"), dsn=cluster.dsn(user=login_role)
    )

    assert proc.returncode == 1, proc.stderr
    listing = dumps.list_dumps(tmp_path)
    assert set(listing) == {good.name}
    assert not list((tmp_path / bad.name).iterdir())  # no partial file left behind
    final = json.loads(proc.stderr.strip().splitlines()[-1])
    assert final["event"] == "run failed"
    assert bad.name in final["error"] and "permission denied" in final["error"]
    assert good.name not in final["error"]
    assert f"FAILED  {bad.name}" in proc.stdout


def test_a_failed_pg_dump_stops_the_counts_beside_it(cluster, login_role, make_db, tmp_path):
    """pg_dump fails at once (it locks every table first); the counts stop instead of running on."""
    db = make_db(rows=0)
    db.execute(f'GRANT SELECT ON items TO "{login_role}"')
    for name in ("aa_1", "aa_2", "aa_3"):  # counted first (sorted by name), ~0.1 s each
        db.execute(f"CREATE TABLE {name} AS SELECT g AS id FROM generate_series(1, 1500000) g")
        db.execute(f'GRANT SELECT ON {name} TO "{login_role}"')
    db.execute("CREATE TABLE zz_secret (x int)")  # no grant: pg_dump's LOCK TABLE fails on it
    db.execute("SELECT pg_stat_reset()")

    proc = backup(cluster, tmp_path, db.name, dsn=cluster.dsn(user=login_role))

    assert proc.returncode == 1, proc.stderr
    error = json.loads(proc.stderr.strip().splitlines()[-1])["error"]
    assert "pg_dump" in error and "permission denied" in error and "zz_secret" in error
    others = "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    with db.connect() as conn:
        for _ in range(100):  # the session's backend reports its statistics as it exits
            if not conn.execute(others).fetchall():
                break
            time.sleep(0.05)
        conn.execute("SELECT pg_stat_clear_snapshot()")
        scanned = conn.execute(
            "SELECT relname FROM pg_stat_user_tables WHERE relname LIKE 'aa%' AND seq_scan > 0"
        ).fetchall()
    assert len(scanned) < 3, scanned


def test_missing_database_fails_alone(cluster, make_db, tmp_path):
    good = make_db(rows=5)
    proc = backup(cluster, tmp_path, good.name, "no_such_db_lg")
    assert proc.returncode == 1
    assert "no_such_db_lg" in proc.stderr and "does not exist" in proc.stderr
    assert set(dumps.list_dumps(tmp_path)) == {good.name}


def test_exclude_and_every_database_on_a_dedicated_cluster(tmp_path):
    from pgharness import start_cluster

    dedicated = start_cluster(15)
    try:
        with dedicated.connect() as conn:
            conn.execute("CREATE DATABASE shop")
            conn.execute("CREATE DATABASE scratch")
            conn.execute("CREATE DATABASE closed WITH ALLOW_CONNECTIONS false")
        proc = backup(dedicated, tmp_path, extra=("--exclude", "scratch"))
        assert proc.returncode == 0, proc.stderr
        assert set(dumps.list_dumps(tmp_path)) == {"postgres", "shop"}
    finally:
        dedicated.cleanup()


def test_retention_deletes_only_old_dumps_it_wrote(cluster, make_db, tmp_path):
    db = make_db(rows=3)
    assert backup(cluster, tmp_path, db.name).returncode == 0
    first = newest_dump(tmp_path, db.name)
    old20 = clone_dump(first, days_ago=20)
    old10 = clone_dump(first, days_ago=10)
    recent = clone_dump(first, days_ago=3)
    db_dir = first.parent
    stranger = db_dir / f"{db.name}-20200101T000000Z.dump"  # our name, but no manifest: not ours
    stranger.write_bytes(b"someone else's file")
    partial = dumps.partial_path(db_dir / f"{db.name}-20200102T000000Z.dump")
    partial.write_bytes(b"left by a killed run")
    notes = db_dir / "notes.txt"
    notes.write_text("keep me")
    for path in (stranger, partial, notes):
        os.utime(path, (0, 0))

    proc = backup(cluster, tmp_path, db.name, extra=("--retention-days", "7"))

    assert proc.returncode == 0, proc.stderr
    for gone in (old20, old10):
        assert not gone.exists()
        assert not dumps.checksum_path(gone).exists()
        assert not dumps.manifest_path(gone).exists()
    for kept in (recent, first, stranger, partial, notes):
        assert kept.exists(), kept
    assert len(dumps.list_dumps(tmp_path)[db.name]) == 3  # recent, first, and the new one
    assert f"removed {old20}" in proc.stdout


def test_retention_never_deletes_the_newest_complete_dump(cluster, make_db, tmp_path):
    from pgtool.logical.dump_retention import apply_retention

    db = make_db(rows=3)
    assert backup(cluster, tmp_path, db.name).returncode == 0
    first = newest_dump(tmp_path, db.name)
    older = clone_dump(first, days_ago=40)
    newest_old = clone_dump(first, days_ago=30)
    first.unlink()
    dumps.manifest_path(first).unlink()
    # A newer file without a manifest is not a complete dump: it must not count as "the newest".
    (first.parent / f"{db.name}-{dumps.format_stamp(datetime.now(UTC))}.dump").write_bytes(b"x")

    removed = apply_retention(first.parent, 7)

    assert removed == [older]
    assert newest_old.exists()
    assert [i.path for i in dumps.list_dumps(tmp_path)[db.name]] == [newest_old]


def test_second_run_on_a_locked_directory_fails_clearly(cluster, make_db, tmp_path):
    db = make_db(rows=3)
    fd = os.open(tmp_path / dumps.LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        proc = backup(cluster, tmp_path, db.name)
    finally:
        os.close(fd)
    assert proc.returncode == 1
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.strip()]
    assert "another pgtool backup is running" in lines[-1]["error"]
    assert dumps.list_dumps(tmp_path) == {}
    # the lock is released when its holder goes away: the next run works
    assert backup(cluster, tmp_path, db.name).returncode == 0


def test_wait_queues_behind_a_running_backup(cluster, make_db, tmp_path):
    db = make_db(rows=3)
    fd = os.open(tmp_path / dumps.LOCK_FILE, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    argv = [
        *pgtool_argv(),
        "backup",
        "--dsn",
        cluster.dsn(),
        "--dest",
        str(tmp_path),
        "-d",
        db.name,
        "--wait",
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        first_event = json.loads(proc.stderr.readline())
        assert first_event["event"] == "waiting for lock"
        assert proc.poll() is None
        assert dumps.list_dumps(tmp_path) == {}
    finally:
        os.close(fd)
    proc.wait(timeout=120)
    assert proc.returncode == 0
    assert len(dumps.list_dumps(tmp_path)[db.name]) == 1


def test_two_concurrent_runs_never_write_at_the_same_time(cluster, make_db, tmp_path):
    db = make_db(rows=100_000)
    argv = [*pgtool_argv(), "backup", "--dsn", cluster.dsn(), "--dest", str(tmp_path), "-d", db.name]
    procs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outcomes = [(p.wait(timeout=300), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    codes = sorted(code for code, _ in outcomes)
    # Either they did not overlap (both succeed, one after the other) or the second was refused.
    assert codes in ([0, 0], [0, 1])
    for code, err in outcomes:
        if code == 1:
            assert "another pgtool backup is running" in err
    assert len(dumps.list_dumps(tmp_path)[db.name]) == codes.count(0)


def test_metrics_survive_a_failed_run(cluster, login_role, make_db, pushgateway, tmp_path):
    db = make_db(rows=10)
    db.execute(f'GRANT SELECT ON items TO "{login_role}"')
    args = ("--pushgateway", pushgateway.url)
    dsn = cluster.dsn(user=login_role)

    assert backup(cluster, tmp_path, db.name, extra=args, dsn=dsn).returncode == 0
    job = {"job": "pgtool-backup"}
    assert pushgateway.samples("pgtool_last_run_success", **job) == [1.0]
    assert pushgateway.samples("pgtool_backup_database_success", database=db.name, **job) == [1.0]
    (last_ok,) = pushgateway.samples(
        "pgtool_backup_database_last_success_timestamp_seconds", database=db.name
    )
    (size,) = pushgateway.samples("pgtool_backup_database_size_bytes", database=db.name)
    assert size == newest_dump(tmp_path, db.name).stat().st_size
    assert pushgateway.samples("pgtool_backup_database_duration_seconds", database=db.name)
    (run_ok,) = pushgateway.samples("pgtool_last_success_timestamp_seconds", **job)

    db.execute("CREATE TABLE secret (x int)")  # the role cannot read it: this database now fails
    assert backup(cluster, tmp_path, db.name, extra=args, dsn=dsn).returncode == 1

    assert pushgateway.samples("pgtool_last_run_success", **job) == [0.0]
    assert pushgateway.samples("pgtool_backup_database_success", database=db.name, **job) == [0.0]
    assert pushgateway.samples("pgtool_backup_database_last_success_timestamp_seconds", database=db.name) == [
        last_ok
    ]
    assert pushgateway.samples("pgtool_last_success_timestamp_seconds", **job) == [run_ok]


def test_bad_arguments_are_usage_errors(cluster, tmp_path):
    proc = backup(cluster, tmp_path, extra=("--jobs", "0"))
    assert proc.returncode == 2
    assert "--jobs" in proc.stderr and "Traceback" not in proc.stderr


def test_sigterm_mid_dump_leaves_no_partial_file(cluster, make_db, tmp_path):
    db = make_db(rows=1_500_000)
    returncode, err = sigterm_while_running(
        cluster,
        ["backup", "--dsn", cluster.dsn(), "--dest", str(tmp_path), "-d", db.name],
        "pgtool-backup-pg_dump",
    )
    assert returncode == 130, err
    assert list((tmp_path / db.name).iterdir()) == []  # neither a partial nor a "complete" dump
    with cluster.connect() as conn:  # pg_dump was stopped, not left running
        rows = conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE application_name LIKE 'pgtool-backup%'"
        ).fetchall()
    assert rows == []
