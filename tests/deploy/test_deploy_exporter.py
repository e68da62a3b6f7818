"""exporter/queries.yaml, run by Debian's real prometheus-postgres-exporter (0.11) against real
PostgreSQL 15 and 18 primaries with a streaming standby, connecting as grafana_reader."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from deploy_support import REPO

from pgharness import pgtool_argv, retry, start_cluster
from pgtool import appnames
from pgtool.pg.conn import connect

MAJORS = (15, 18)


def labels_of(samples: dict, name: str) -> list[dict[str, str]]:
    return [labels for labels, _ in samples.get(name, [])]


def test_queries_file_parses_and_names_columns() -> None:
    queries = yaml.safe_load((REPO / "exporter/queries.yaml").read_text())
    for prefix, entry in queries.items():
        columns = [next(iter(m)) for m in entry["metrics"]]
        selected = re.findall(r"\bAS (\w+)", entry["query"])
        for column in columns:
            assert column in selected or re.search(rf"\b{column}\b", entry["query"]), (prefix, column)


@pytest.mark.parametrize("major", MAJORS)
def test_exporter_runs_every_query_without_error(exporter_runs: dict, major: int) -> None:
    run = exporter_runs[major]
    assert "Error running query" not in run.log, run.log[-3000:]
    assert "Failed to parse user queries" not in run.log
    assert [v for _, v in run.primary["pg_exporter_user_queries_load_error"]] == [0.0]
    assert [v for _, v in run.primary["pg_up"]] == [1.0]


@pytest.mark.parametrize("major", MAJORS)
def test_top_statements_series(exporter_runs: dict, major: int) -> None:
    samples = exporter_runs[major].primary
    info = labels_of(samples, "pg_statements_query_info")
    slow = [i for i in info if "pg_sleep" in i["query"]]
    assert slow, [i["query"] for i in info]
    queryid = slow[0]["queryid"]
    calls = {lab["queryid"]: v for lab, v in samples["pg_statements_top_calls_total"]}
    exec_seconds = {lab["queryid"]: v for lab, v in samples["pg_statements_top_exec_seconds_total"]}
    assert calls[queryid] >= 3
    assert exec_seconds[queryid] >= 0.15  # three pg_sleep(0.05), in seconds (not milliseconds)
    # The text is on the info series only, cut to 200 characters and on one line.
    assert all(len(i["query"]) <= 200 and "\n" not in i["query"] for i in info)
    assert all("query" not in lab for lab, _ in samples["pg_statements_top_calls_total"])
    # Bounded: at most 50 by mean time plus 50 by I/O.
    assert len(calls) <= 100 and len(info) <= 100
    # The I/O side: the table scan read or hit blocks; block times come from the version's own columns.
    scan = next(i["queryid"] for i in info if "deploy_orders" in i["query"] and "count" in i["query"])
    hits = {lab["queryid"]: v for lab, v in samples["pg_statements_top_shared_blks_hit_total"]}
    reads = {lab["queryid"]: v for lab, v in samples["pg_statements_top_shared_blks_read_total"]}
    assert hits[scan] + reads[scan] > 0
    for name in ("pg_statements_top_io_read_seconds_total", "pg_statements_top_io_write_seconds_total"):
        assert samples[name], name


@pytest.mark.parametrize("major", MAJORS)
def test_archiver_and_replication_series(exporter_runs: dict, major: int) -> None:
    primary = exporter_runs[major].primary
    standby = exporter_runs[major].standby
    assert primary["pg_stat_archiver_failed_count"][0][1] > 0  # archive_command 'false'
    assert primary["pg_wal_archive_ready_count"][0][1] >= 1  # segments waiting
    assert "pg_stat_archiver_last_archive_age" in primary
    assert primary["pg_replication_standbys_streaming"][0][1] == 1
    standby_lag = [lab for lab in labels_of(primary, "pg_replication_standby_replay_lag_seconds")]
    assert [lab["application_name"] for lab in standby_lag] == ["deploy-standby"]
    assert standby["pg_wal_receiver_streaming"][0][1] == 1
    # primary-only and standby-only series stay where they belong
    assert "pg_wal_receiver_streaming" not in primary
    assert "pg_replication_standbys_streaming" not in standby


@pytest.mark.parametrize("major", MAJORS)
def test_table_sizes_and_transactions(exporter_runs: dict, major: int) -> None:
    primary = exporter_runs[major].primary
    tables = {lab["relname"]: v for lab, v in primary["pg_table_total_bytes"]}
    assert tables["deploy_orders"] > 1_000_000
    assert "pg_oldest_transaction_age_seconds" in primary
    assert primary["pg_settings_max_connections"][0][1] > 0


def test_oldest_transaction_rule_is_the_code_s() -> None:
    """The exclusion in pg_oldest_transaction is src/pgtool/appnames.py's, verbatim (one source)."""
    query = yaml.safe_load((REPO / "exporter/queries.yaml").read_text())["pg_oldest_transaction"]["query"]
    assert appnames.LONG_TRANSACTION_EXCLUSION in query


def test_oldest_transaction_ignores_a_running_pgtool_backup(pg_major: int, tmp_path: Path) -> None:
    """Issue 22 item 2: a real `pgtool backup`, held mid-dump, is not what the long-running-transaction
    alert sees. A prepared transaction holds the table's lock (it shows in no session), so while pg_dump and
    the counting session wait on it with their snapshot open, the exporter's query, run verbatim, must not
    report the database."""
    query = yaml.safe_load((REPO / "exporter/queries.yaml").read_text())["pg_oldest_transaction"]["query"]
    cluster = start_cluster(pg_major, settings={"max_prepared_transactions": "2"})
    backup = None
    try:
        with cluster.connect() as conn:
            conn.execute("CREATE DATABASE held")
        with connect(cluster.dsn(), dbname="held") as conn:
            conn.execute("CREATE TABLE public.t AS SELECT 1 AS x")
            conn.execute("BEGIN")
            conn.execute("LOCK TABLE public.t IN ACCESS EXCLUSIVE MODE")
            conn.execute("PREPARE TRANSACTION 'hold'")
        backup = subprocess.Popen(
            [*pgtool_argv(), "backup", "--dsn", cluster.dsn(), "--dest", str(tmp_path), "--database", "held"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        pgtool_sessions = (
            "SELECT application_name, wait_event_type FROM pg_catalog.pg_stat_activity"
            " WHERE datname = 'held' AND application_name LIKE 'pgtool%' AND xact_start IS NOT NULL"
        )
        with cluster.connect() as conn:
            # pgtool's sessions are blocked on the lock inside their snapshot's transaction
            retry(lambda: any(w == "Lock" for _, w in conn.execute(pgtool_sessions).fetchall()), timeout=60)
            names = {name for name, _ in conn.execute(pgtool_sessions).fetchall()}
            assert appnames.BACKUP_PG_DUMP in names
            assert all(name.startswith(appnames.LONG_TRANSACTION_PREFIXES) for name in names), names
            seen = {row[0] for row in conn.execute(query).fetchall()}
            assert "held" not in seen
        with connect(cluster.dsn(), dbname="held") as conn:
            conn.execute("COMMIT PREPARED 'hold'")
        _, stderr = backup.communicate(timeout=120)
        assert backup.returncode == 0, stderr[-2000:]
    finally:
        if backup is not None and backup.poll() is None:
            backup.kill()
            backup.communicate()
        cluster.cleanup()
