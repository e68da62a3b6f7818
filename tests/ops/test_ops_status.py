"""`pgtool status` against real clusters: healthy, archiving broken, WAL missing, dumps stale."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from ops_helpers import areas, copy_tree, status_json, switch_and_wait, write_dump
from psycopg import sql

from pgharness import retry, run_pgtool, start_cluster
from pgtool.obs.metrics import RunReport, push_run_result

SECTIONS = {
    "server",
    "archiver",
    "dumps",
    "base_backups",
    "verification",
    "recoverability",
    "replication",
    "transactions",
    "pooler",
    "kubernetes",
}


def _status(setup, *extra, archive_dir=None, backup_dir=None, env=None):
    return run_pgtool(
        "status",
        "--dsn",
        setup.dsn,
        "--backup-dir",
        str(backup_dir or setup.backup_dir),
        "--base-dir",
        str(setup.base_dir),
        "--archive-dir",
        str(archive_dir or setup.archive_dir),
        "--k8s",
        "off",
        *extra,
        env=env,
    )


def test_healthy_setup_exits_0_with_the_json_shape(archiving, pushgateway):
    push_run_result(pushgateway.url, "verify", success=True, duration_seconds=1.0, report=RunReport())
    proc = _status(archiving, "--format", "json", "--pushgateway", pushgateway.url)
    doc = status_json(proc)
    assert proc.returncode == 0, doc["problems"]
    assert doc["healthy"] is True
    assert doc["problems"] == []
    assert set(doc["sections"]) == SECTIONS
    assert doc["sections"]["server"]["version_num"] // 10000 == 15
    archiver = doc["sections"]["archiver"]
    assert archiver["state"] == "ok" and archiver["failed_count"] == 0 and archiver["last_archived_wal"]
    base = doc["sections"]["base_backups"]
    assert base["missing_segments"] == []
    assert base["window"]["from_backup"] == base["newest"]
    assert base["window"]["seconds"] > 0
    assert doc["sections"]["dumps"]["databases"][0]["database"] == "postgres"
    assert doc["sections"]["verification"]["jobs"]["pgtool-verify"]["pgtool_last_run_success"] == 1
    assert doc["sections"]["pooler"]["state"] == "skipped"


def test_healthy_text_says_so(archiving):
    proc = _status(archiving)
    assert proc.returncode == 0, proc.stdout
    assert "Healthy: nothing needs attention." in proc.stdout
    assert "recoverable window:" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_missing_wal_segment_is_a_gap_with_what_to_do(archiving, tmp_path):
    archive = copy_tree(archiving.archive_dir, tmp_path / "wal")
    segments = sorted(p for p in archive.iterdir() if len(p.name) == 24)
    victim = segments[-2]  # after the base backup, before the newest: a hole in the chain
    victim.unlink()
    proc = _status(archiving, "--format", "json", archive_dir=archive)
    doc = status_json(proc)
    assert proc.returncode == 1
    base = doc["sections"]["base_backups"]
    assert base["missing_segments"] == [victim.name]
    assert base["window"] is None
    gap = [p for p in doc["problems"] if p["area"] == "base_backups" and victim.name in p["message"]]
    assert gap and "pgtool basebackup" in gap[0]["fix"]
    text = _status(archiving, archive_dir=archive)
    assert text.returncode == 1
    assert f"base_backups: WAL segment {victim.name}" in text.stdout


def test_stale_and_missing_dumps(archiving, tmp_path):
    dumps = tmp_path / "dumps"
    write_dump(dumps, "postgres", datetime.now(UTC) - timedelta(days=3))
    with archiving.cluster.connect(autocommit=True) as conn:
        conn.execute("CREATE DATABASE ops_undumped")
    try:
        proc = _status(archiving, "--format", "json", backup_dir=dumps)
        doc = status_json(proc)
        assert proc.returncode == 1
        messages = [p["message"] for p in doc["problems"] if p["area"] == "dumps"]
        assert any("newest dump of postgres is 3d" in m for m in messages), messages
        assert any("ops_undumped has no complete dump" in m for m in messages), messages
        # Excluded databases are not expected, and a fresher limit makes the stale dump fine.
        ok = _status(
            archiving, "--exclude-database", "ops_undumped", "--max-dump-age", "4d", backup_dir=dumps
        )
        assert ok.returncode == 0, ok.stdout
    finally:
        with archiving.cluster.connect(autocommit=True) as conn:
            conn.execute("DROP DATABASE ops_undumped")


def test_failed_verification_in_the_pushgateway(archiving, pushgateway):
    push_run_result(pushgateway.url, "verify", success=False, duration_seconds=1.0, report=RunReport())
    proc = _status(archiving, "--format", "json", "--pushgateway", pushgateway.url)
    doc = status_json(proc)
    assert proc.returncode == 1
    assert areas(doc) == ["verification"]
    assert "failed" in doc["problems"][0]["message"]


def test_recoverability_shows_the_verified_point_and_predicts_rto_from_the_drill(archiving, pushgateway):
    from pgtool.physical.base_catalog import list_base_backups
    from pgtool.wal.names import format_lsn, parse_lsn

    point = datetime(2026, 12, 1, 3, 4, 5, 123456, tzinfo=UTC).timestamp()
    drill = RunReport()
    drill.gauge("pgtool_verified_recovery_point_timestamp_seconds", "point", point)
    drill.gauge("pgtool_restore_duration_seconds", "restore", 7.5)
    drill.gauge("pgtool_replay_bytes_per_second", "rate", 1024.0 * 1024)
    drill.gauge("pgtool_predicted_rto_seconds", "drill rto", 9.0)
    push_run_result(pushgateway.url, "verify", success=True, duration_seconds=1.0, report=RunReport())
    push_run_result(pushgateway.url, "verify-base", success=True, duration_seconds=9.0, report=drill)
    with archiving.cluster.connect(autocommit=True) as conn:
        before = parse_lsn(conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])
    proc = _status(archiving, "--format", "json", "--pushgateway", pushgateway.url)
    doc = status_json(proc)
    section = doc["sections"]["recoverability"]
    assert section["state"] == "ok"
    assert section["verified_recovery_point"] == "2026-12-01T03:04:05.123456+00:00"
    newest = list_base_backups(archiving.base_dir)[-1]
    assert section["backup"] == newest.id and section["backup_start_lsn"] == newest.start_lsn
    current = parse_lsn(section["current_lsn"])
    assert current >= before
    assert section["wal_since_backup_bytes"] == current - parse_lsn(newest.start_lsn) > 0
    assert section["predicted_rto_seconds"] == round(
        7.5 + section["wal_since_backup_bytes"] / (1024 * 1024), 1
    )
    assert section["rpo_seconds"] is not None
    text = _status(archiving, "--pushgateway", pushgateway.url).stdout
    assert "verified recovery point: 2026-12-01T03:04:05.123456+00:00" in text
    assert f"{format_lsn(parse_lsn(newest.start_lsn))}.." in text
    assert (
        "predicted RTO = restore time + (current LSN - newest base backup's start LSN) / replay rate" in text
    )


def test_recoverability_without_a_base_drill_says_so(archiving, pushgateway):
    push_run_result(pushgateway.url, "verify", success=True, duration_seconds=1.0, report=RunReport())
    doc = status_json(_status(archiving, "--format", "json", "--pushgateway", pushgateway.url))
    section = doc["sections"]["recoverability"]
    assert section["verified_recovery_point"] is None and section["predicted_rto_seconds"] is None
    assert doc["sections"]["recoverability"]["state"] == "ok"


def test_no_verification_result_is_reported(archiving, pushgateway):
    proc = _status(archiving, "--pushgateway", pushgateway.url)
    assert proc.returncode == 1
    assert "no verification result in the Pushgateway" in proc.stdout


def test_long_running_transaction(archiving):
    with archiving.cluster.connect(autocommit=False) as conn:
        conn.execute("SELECT txid_current()")  # opens a transaction and keeps it open
        proc = _status(archiving, "--format", "json", "--max-xact-age", "0s")
        pid = conn.info.backend_pid
    doc = status_json(proc)
    assert proc.returncode == 1
    pids = [x["pid"] for x in doc["sections"]["transactions"]["long_running"]]
    assert pid in pids
    assert any(f"pg_terminate_backend({pid})" in p["fix"] for p in doc["problems"])


def test_failing_archive_command_is_reported(server_dir):
    cluster = start_cluster(15, settings={"archive_mode": "on", "archive_command": "false"})
    try:

        def failed() -> bool:
            with cluster.connect(autocommit=True) as conn:
                conn.execute("CREATE TABLE IF NOT EXISTS t (x int); INSERT INTO t VALUES (1)")
                conn.execute("SELECT pg_switch_wal()")
                return conn.execute("SELECT failed_count FROM pg_stat_archiver").fetchone()[0] > 0

        retry(failed, timeout=90, interval=1.0)
        proc = run_pgtool("status", "--dsn", cluster.dsn(), "--format", "json", "--k8s", "off")
        doc = status_json(proc)
        assert proc.returncode == 1
        assert doc["sections"]["archiver"]["failed_count"] > 0
        problem = next(p for p in doc["problems"] if p["area"] == "archiver")
        assert "archive_command is failing" in problem["message"]
        assert "PostgreSQL log" in problem["fix"]
    finally:
        cluster.cleanup()


@pytest.mark.all_versions
def test_archiving_off_needs_attention(cluster):
    # The session clusters do not archive: no point-in-time recovery. Every server query runs here.
    proc = run_pgtool("status", "--dsn", cluster.dsn(), "--k8s", "off", "--format", "json")
    doc = status_json(proc)
    assert proc.returncode == 1
    assert doc["sections"]["server"]["version_num"] // 10000 == cluster.binaries.major
    assert areas(doc) == ["archiver"]
    assert "WAL archiving is off" in doc["problems"][0]["message"]


def test_unreachable_server_is_exit_3_one_line():
    proc = run_pgtool("status", "--k8s", "off", env={"PGTOOL_DSN": "postgresql://u:s3cret@127.0.0.1:1/x"})
    assert proc.returncode == 3
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "s3cret" not in proc.stderr
    assert json.loads(lines[0])["event"] == "run failed"


def test_bad_threshold_is_usage_error(cluster):
    proc = run_pgtool("status", "--dsn", cluster.dsn(), "--max-dump-age", "soon")
    assert proc.returncode == 2
    assert "invalid duration 'soon'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_status_on_archiving_setup_after_more_wal_stays_gapless(archiving):
    switch_and_wait(archiving.cluster)
    proc = _status(archiving, "--format", "json")
    doc = status_json(proc)
    assert doc["sections"]["base_backups"]["missing_segments"] == []


def test_kubernetes_client_not_imported_without_config(cluster, tmp_path):
    env_home = {"HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "none")}
    proc = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "pgtool",
            "status",
            "--dsn",
            cluster.dsn(),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        env={**_clean_env(), **env_home},
    )
    imported = {
        line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")
    }
    assert "pgtool.status.kube" in imported
    assert "kubernetes" not in imported
    doc = json.loads(proc.stdout)
    assert doc["sections"]["kubernetes"]["state"] == "skipped"


def test_k8s_on_without_config_is_one_clear_problem(cluster, tmp_path):
    env = {"HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "none")}
    proc = run_pgtool("status", "--dsn", cluster.dsn(), "--format", "json", "--k8s", "on", env=env)
    doc = status_json(proc)
    problem = next(p for p in doc["problems"] if p["area"] == "kubernetes")
    assert "no Kubernetes configuration" in problem["message"]


def test_k8s_unreachable_api_server_is_reported_by_the_real_client(cluster, tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'http://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t0ken}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u, namespace: ops}}]\n"
    )
    env = {"HOME": str(tmp_path), "KUBECONFIG": str(kubeconfig)}
    proc = run_pgtool("status", "--dsn", cluster.dsn(), "--format", "json", "--k8s", "on", env=env)
    doc = status_json(proc)
    assert proc.returncode == 1
    problem = next(p for p in doc["problems"] if p["area"] == "kubernetes")
    assert problem["message"].startswith("cannot read the pgtool CronJobs in namespace")
    assert "t0ken" not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


def _clean_env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env.pop("PGTOOL_DSN", None)
    env.pop("DATABASE_URL", None)
    return env


def test_replica_is_listed_and_standby_status_works(archiving):
    from pgtool.pg import command
    from pgtool.pg.cluster import LocalCluster

    primary = archiving.cluster
    settings = {"primary_conninfo": primary.dsn(), "max_connections": "200"}  # hot standby: >= primary's
    replica = LocalCluster(primary.binaries, settings=settings)
    try:
        command.run(
            [
                primary.binaries.path("pg_basebackup"),
                *("-d", primary.dsn(), "-D", str(replica.data_dir)),
                *("-X", "stream", "-R", "--no-sync", "--checkpoint=fast"),
            ],
            run_as=replica.run_as,
            cwd="/",
        )
        replica.start()

        def streaming() -> dict:
            doc = status_json(_status(archiving, "--format", "json"))
            replicas = doc["sections"]["replication"]["replicas"]
            return doc if replicas and replicas[0]["state"] == "streaming" else {}

        doc = retry(streaming, timeout=60, interval=0.5)
        assert doc["sections"]["replication"]["state"] == "ok"
        standby = run_pgtool("status", "--dsn", replica.dsn(), "--format", "json", "--k8s", "off")
        sdoc = status_json(standby)
        assert sdoc["sections"]["server"]["in_recovery"] is True
        assert sdoc["sections"]["archiver"]["state"] == "skipped"
        assert sdoc["sections"]["replication"]["role"] == "standby"
        assert sdoc["sections"]["replication"]["receiver_status"] == "streaming"
        assert standby.returncode == 0, sdoc["problems"]
    finally:
        replica.cleanup()


def test_healthy_after_real_pgtool_backup_and_basebackup():
    """The layouts status reads, written by the real commands (not by this area's helpers)."""
    from ops_helpers import archiving_setup

    gen = archiving_setup()
    setup = next(gen)
    try:
        root = setup.archive_dir.parent
        dumps, base = root / "real-dumps", root / "real-base"
        backup = run_pgtool("backup", "--dsn", setup.dsn, "--dest", str(dumps))
        assert backup.returncode == 0, backup.stderr[-2000:]
        basebackup = run_pgtool(
            "basebackup", "--dsn", setup.dsn, "--dest", str(base), "--archive-dir", str(setup.archive_dir)
        )
        assert basebackup.returncode == 0, basebackup.stderr[-2000:]
        switch_and_wait(setup.cluster, times=2)
        proc = run_pgtool(
            "status",
            "--dsn",
            setup.dsn,
            "--backup-dir",
            str(dumps),
            "--base-dir",
            str(base),
            "--archive-dir",
            str(setup.archive_dir),
            "--format",
            "json",
            "--k8s",
            "off",
        )
        doc = status_json(proc)
        assert proc.returncode == 0, doc["problems"]
        assert [d["database"] for d in doc["sections"]["dumps"]["databases"]] == ["postgres"]
        assert (
            doc["sections"]["base_backups"]["window"]["from_backup"]
            == doc["sections"]["base_backups"]["newest"]
        )
    finally:
        for _ in gen:
            pass


def test_role_without_pg_monitor_still_gets_a_report(archiving):
    with archiving.cluster.connect() as conn:
        conn.execute("DROP ROLE IF EXISTS ops_plain")
        conn.execute("CREATE ROLE ops_plain LOGIN")
    try:
        dsn = archiving.cluster.dsn(user="ops_plain")
        proc = run_pgtool("status", "--dsn", dsn, "--format", "json", "--k8s", "off")
        doc = status_json(proc)
        assert "unexpected error" not in proc.stderr
        assert doc["sections"]["archiver"]["waiting_segments"] is None  # hidden, not a failure
        assert proc.returncode == 0, doc["problems"]
        text = run_pgtool("status", "--dsn", dsn, "--k8s", "off")
        assert "grant pg_monitor" in text.stdout
    finally:
        with archiving.cluster.connect() as conn:
            conn.execute("DROP ROLE ops_plain")


def test_archive_mode_on_with_empty_command(archiving):
    with archiving.cluster.connect() as conn:
        original = conn.execute("SHOW archive_command").fetchone()[0]
        conn.execute("ALTER SYSTEM SET archive_command = ''")
        conn.execute("SELECT pg_reload_conf()")
    try:

        def reported() -> dict:
            doc = status_json(_status(archiving, "--format", "json"))
            return doc if "archiver" in areas(doc) else {}

        doc = retry(reported, timeout=30, interval=0.3)
        assert any("archive_command is empty" in p["message"] for p in doc["problems"])
    finally:
        with archiving.cluster.connect() as conn:
            conn.execute(sql.SQL("ALTER SYSTEM SET archive_command = {}").format(sql.Literal(original)))
            conn.execute("SELECT pg_reload_conf()")
        retry(lambda: _status(archiving).returncode == 0, timeout=30, interval=0.3)
