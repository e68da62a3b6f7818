"""Generate the deployment files that are derived from others; tests/deploy checks they are up to date.

- dashboards/postgres-overview.json: the Grafana dashboard, built here from plain Python (one function per
  row) so its PromQL and SQL are reviewed as code;
- manifests/base/files/{queries.yaml,pgbouncer_exporter.py,promtail.yaml}: copies of exporter/ and logging/
  files for kustomize's configMapGenerator (kustomize loads nothing outside the kustomization's directory);
- manifests/base/files/pgbouncer.ini's max_db_connections, from scripts/deploy_sizing.py.
Panel builders, data sources and the SQL panels' statements: scripts/deploy_panels.py.

Usage: python scripts/deploy_gen.py          (write)
       python scripts/deploy_gen.py --check  (exit 1 if anything is out of date)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import deploy_sizing  # beside this file (also when tests load deploy_gen by path)
from deploy_panels import (
    LOKI,
    PROM,
    ROLES,
    SQL_TOP_BY_IO,
    SQL_TOP_BY_MEAN,
    Builder,
    plan_link,
    prom_target,
    sql_target,
    stat,
    table,
    timeseries,
)

REPO = Path(__file__).resolve().parents[1]
PGBOUNCER_INI = REPO / "manifests/base/files/pgbouncer.ini"
DASHBOARD = REPO / "dashboards/postgres-overview.json"
COPIES = {
    "exporter/queries.yaml": "manifests/base/files/queries.yaml",
    "exporter/pgbouncer_exporter.py": "manifests/base/files/pgbouncer_exporter.py",
    "logging/promtail.yaml": "manifests/base/files/promtail.yaml",
}


def recoverability(b: Builder) -> None:
    b.row("Recoverability: dumps, base backups, restore drills")
    passed = [
        {
            "type": "value",
            "options": {"0": {"text": "FAILED", "color": "red"}, "1": {"text": "passed", "color": "green"}},
        }
    ]
    b.line(
        [
            stat(
                "Newest dump",
                'time() - max(pgtool_last_success_timestamp_seconds{job="pgtool-backup"})',
                "s",
                26 * 3600,
                "Age of the last successful pgtool backup (daily; alert at 26 h).",
            ),
            stat(
                "Newest base backup",
                'time() - max(pgtool_last_success_timestamp_seconds{job="pgtool-basebackup"})',
                "s",
                8 * 86400,
                "Age of the last successful pgtool basebackup (weekly; alert at 8 days).",
            ),
            stat(
                "Last restore drill",
                'time() - max(pgtool_last_success_timestamp_seconds{job="pgtool-verify"})',
                "s",
                26 * 3600,
                "Age of the last successful pgtool verify (daily; alert at 26 h).",
            ),
            stat(
                "Last drill result",
                'max(pgtool_last_run_success{job="pgtool-verify"})',
                "none",
                None,
                "1 when the newest dumps restored with matching row counts.",
                passed,
            ),
        ],
        height=5,
    )
    b.line(
        [
            table(
                "Dumps per database",
                [
                    prom_target(
                        "time() - max by (database) (pgtool_backup_database_last_success_timestamp_seconds)",
                        instant=True,
                        ref="A",
                    ),
                    prom_target(
                        "max by (database) (pgtool_backup_database_size_bytes)", instant=True, ref="B"
                    ),
                    prom_target("max by (database) (pgtool_verify_database_success)", instant=True, ref="C"),
                ],
                PROM,
                "A: seconds since the last good dump; B: its size; C: 1 if its restore drill passed.",
            ),
            timeseries(
                "Run durations",
                [
                    prom_target(
                        'max by (job) (pgtool_last_run_duration_seconds{job=~"pgtool-.*"})', "{{job}}"
                    ),
                ],
                "s",
            ),
        ]
    )


def recovery_point_and_rto(b: Builder) -> None:
    """RPO now, the verified recovery point and the RTO the base drill measured (issue 19), drill history."""
    b.row("Recoverability: RPO, verified recovery point, predicted RTO")
    base = '{job="pgtool-verify-base"}'
    b.line(
        [
            stat(
                "RPO: last WAL archived",
                "max(pg_stat_archiver_last_archive_age)",
                "s",
                15 * 60,
                "Seconds since the primary last archived a WAL segment: what is written since exists only on "
                "the server (alert PostgresWalArchiveStale at 15 min with segments waiting).",
            ),
            stat(
                "Verified recovery point",
                f"time() - max(pgtool_verified_recovery_point_timestamp_seconds{base})",
                "s",
                8 * 86400,
                "Age of the commit time of the last transaction the base drill (pgtool verify --base) "
                "actually replayed: recovery is proven up to there (alert PgtoolVerifiedRecoveryPointStale "
                "at 8 days).",
            ),
            stat(
                "Predicted RTO (drill)",
                f"max(pgtool_predicted_rto_seconds{base})",
                "s",
                4 * 3600,
                "Restore + replay time the last base drill measured for the archive it drilled (alert "
                "PgtoolPredictedRtoAboveSlo above the 4 h objective). pgtool status predicts it for now: "
                "restore time + (current LSN - newest base backup's start LSN) / replay rate.",
            ),
            stat(
                "Replay rate (drill)",
                f"max(pgtool_replay_bytes_per_second{base})",
                "Bps",
                None,
                "WAL bytes the last base drill replayed per second of replay.",
            ),
        ],
        height=5,
    )
    b.line(
        [
            timeseries(
                "Drill history (1 = passed)",
                [
                    prom_target(
                        'max by (job) (pgtool_last_run_success{job=~"pgtool-verify|pgtool-verify-base"})',
                        "{{job}}",
                    ),
                ],
                "none",
                "Each restore drill's last result over time: dumps (pgtool-verify), base backups "
                "(pgtool-verify-base).",
            ),
            timeseries(
                "Base drill: restore and RTO",
                [
                    prom_target(f"max(pgtool_restore_duration_seconds{base})", "restore", ref="A"),
                    prom_target(f"max(pgtool_predicted_rto_seconds{base})", "restore + replay", ref="B"),
                ],
                "s",
                "What each base drill measured.",
            ),
        ]
    )
    status = '{job="pgtool-status"}'
    b.line(
        [
            timeseries(
                "RPO (pgtool status)",
                [
                    prom_target(f"max(pgtool_rpo_seconds{status})", "RPO at the last status run", ref="A"),
                    prom_target(
                        f"max(pgtool_rpo_seconds{status}"
                        f" + (time() - pgtool_last_run_timestamp_seconds{status}))",
                        "known now (alert PgtoolRpoAboveObjective)",
                        ref="B",
                    ),
                ],
                "s",
                "now - when the newest archived WAL segment was archived (0 when nothing was written since), "
                "as pgtool status --push measures it; plus the time since that run, what the alert compares "
                "with the 15 min objective.",
            ),
            timeseries(
                "Archive backlog (pgtool status)",
                [prom_target(f"max(pgtool_archive_backlog_bytes{status})", "not archived", ref="A")],
                "bytes",
                "WAL the server wrote past the end of the newest archived segment (pgtool status --push); "
                "segments and .ready files: pgtool_archive_backlog_segments, pgtool_archive_ready_files.",
            ),
        ]
    )


def connections(b: Builder) -> None:
    b.row("Connections")
    b.line(
        [
            timeseries(
                "Backends per database",
                [
                    prom_target("sum by (datname) (pg_stat_database_numbackends)", "{{datname}}", ref="A"),
                    prom_target("max(pg_settings_max_connections)", "max_connections", ref="B"),
                ],
                "short",
            ),
            timeseries(
                "PgBouncer clients",
                [
                    prom_target(
                        "sum by (database) (pgbouncer_pools_client_active_connections)",
                        "{{database}} active",
                        ref="A",
                    ),
                    prom_target(
                        "sum by (database) (pgbouncer_pools_client_waiting_connections)",
                        "{{database}} waiting",
                        ref="B",
                    ),
                ],
                "short",
                "Waiting clients mean the pool (default_pool_size) is exhausted.",
            ),
            timeseries(
                "Oldest transaction",
                [
                    prom_target("max by (datname) (pg_oldest_transaction_age_seconds)", "{{datname}}"),
                ],
                "s",
                "Oldest open transaction of a client backend (pg_dump excluded); alert at 1 h.",
            ),
        ]
    )


def replication(b: Builder) -> None:
    b.row("Replication")
    b.line(
        [
            timeseries(
                "Replay lag (time)",
                [
                    prom_target(
                        "max by (application_name) (pg_replication_standby_replay_lag_seconds)",
                        "{{application_name}}",
                    ),
                ],
                "s",
            ),
            timeseries(
                "Replay lag (bytes)",
                [
                    prom_target(
                        "max by (application_name) (pg_replication_standby_replay_lag_bytes)",
                        "{{application_name}}",
                    ),
                ],
                "bytes",
            ),
            timeseries(
                "Streaming",
                [
                    prom_target(
                        "sum(pg_replication_standbys_streaming)", "standbys streaming (primary)", ref="A"
                    ),
                    prom_target(
                        "max by (instance) (pg_wal_receiver_streaming)", "{{instance}} receiving", ref="B"
                    ),
                ],
                "short",
            ),
        ]
    )


def wal_archiver(b: Builder) -> None:
    b.row("WAL archiver")
    b.line(
        [
            timeseries(
                "Archived / failed per minute",
                [
                    prom_target("sum(rate(pg_stat_archiver_archived_count[5m])) * 60", "archived", ref="A"),
                    prom_target("sum(rate(pg_stat_archiver_failed_count[5m])) * 60", "failed", ref="B"),
                ],
                "short",
            ),
            timeseries(
                "Last archived",
                [
                    prom_target("max by (instance) (pg_stat_archiver_last_archive_age)", "{{instance}}"),
                ],
                "s",
            ),
            timeseries(
                "Segments waiting (.ready)",
                [
                    prom_target("max by (instance) (pg_wal_archive_ready_count)", "{{instance}}"),
                ],
                "short",
            ),
        ]
    )


def tables_and_queries(b: Builder) -> None:
    b.row("Tables")
    b.line(
        [
            {
                "type": "bargauge",
                "title": "Largest tables (with indexes and TOAST)",
                "description": "Every database's tables (postgres_exporter discovers the databases); the "
                "replica's copies are the same tables, so each is shown once.",
                "datasource": PROM,
                "targets": [
                    prom_target(
                        "topk(15, max by (datname, schemaname, relname) (pg_table_total_bytes))",
                        "{{datname}}.{{schemaname}}.{{relname}}",
                        instant=True,
                    )
                ],
                "fieldConfig": {"defaults": {"unit": "bytes"}, "overrides": []},
                "options": {"orientation": "horizontal", "displayMode": "gradient"},
            }
        ],
        height=9,
    )
    for role, (label, datasource) in ROLES.items():
        top_statements(b, role, label, datasource)
    b.row("Plans and logs")
    b.line(
        [
            timeseries(
                "auto_explain plans shipped per hour",
                [
                    prom_target(
                        "sum(increase(promtail_custom_postgres_auto_explain_plans_total[1h]))", "plans"
                    ),
                ],
                "short",
                "At least one an hour from the auto-explain-canary CronJob; alert after 24 h of none.",
            ),
            {
                "type": "logs",
                "title": "auto_explain plans",
                "description": "From the primary and the replica: the role label says which.",
                "datasource": LOKI,
                "targets": [
                    {"refId": "A", "datasource": LOKI, "expr": '{job="postgresql", plan="auto_explain"}'}
                ],
                "options": {"showTime": True, "wrapLogMessage": True, "sortOrder": "Descending"},
            },
        ],
        height=10,
    )


def top_statements(b: Builder, role: str, label: str, datasource: dict[str, str]) -> None:
    """One server's statements: Prometheus panels filtered by the exporter's role label, SQL panels on
    that server's data source, plan links to that server's plans."""
    sel = f'{{role="{role}"}}'
    info = (
        "* on (datname, queryid) group_left (query)"
        f" max by (datname, queryid, query) (pg_statements_query_info{sel})"
    )
    link = plan_link(role)
    b.row(f"{label}: top statements (Prometheus: pg_stat_statements via postgres_exporter)")
    b.line(
        [
            table(
                f"{label}: slowest by mean time (last 15 min)",
                [
                    prom_target(
                        "topk(20, sum by (datname, queryid)"
                        f" (rate(pg_statements_top_exec_seconds_total{sel}[15m]))"
                        f" / (sum by (datname, queryid) (rate(pg_statements_top_calls_total{sel}[15m])) > 0) "
                        + info
                        + ")",
                        instant=True,
                    )
                ],
                PROM,
                f"Mean seconds per call on the {role}; click a queryid for its auto_explain plans.",
                link,
            ),
            table(
                f"{label}: most I/O (blocks per second, last 15 min)",
                [
                    prom_target(
                        "topk(20, sum by (datname, queryid)"
                        f" (rate(pg_statements_top_shared_blks_read_total{sel}[15m])"
                        f" + rate(pg_statements_top_shared_blks_written_total{sel}[15m])"
                        f" + rate(pg_statements_top_temp_blks_total{sel}[15m])) " + info + ")",
                        instant=True,
                    )
                ],
                PROM,
                f"Shared blocks read and written plus temp blocks, on the {role}.",
                link,
            ),
        ],
        height=10,
    )
    b.row(f"{label}: top statements (PostgreSQL data source on the {role}, as grafana_reader)")
    b.line(
        [
            table(
                f"{label}: slowest by mean time (since reset)",
                [sql_target(SQL_TOP_BY_MEAN, datasource)],
                datasource,
                f"The {role}'s pg_stat_statements, averages since it was last reset.",
                link,
            ),
            table(
                f"{label}: most I/O (since reset)",
                [sql_target(SQL_TOP_BY_IO, datasource)],
                datasource,
                f"The {role}'s pg_stat_statements.",
                link,
            ),
        ],
        height=10,
    )


def build_dashboard() -> dict[str, Any]:
    b = Builder()
    for section in (
        recoverability,
        recovery_point_and_rto,
        connections,
        replication,
        wal_archiver,
        tables_and_queries,
    ):
        section(b)
    datasource_vars = [
        {"name": name, "label": label, "type": "datasource", "query": kind, "hide": 0, "current": {}}
        for name, label, kind in (
            ("prometheus", "Prometheus", "prometheus"),
            ("postgres_primary", "PostgreSQL primary (grafana_reader)", "grafana-postgresql-datasource"),
            ("postgres_replica", "PostgreSQL replica (grafana_reader)", "grafana-postgresql-datasource"),
            ("loki", "Loki", "loki"),
        )
    ]
    return {
        "uid": "pgtool-postgres-overview",
        "title": "PostgreSQL overview (pgtool)",
        "description": "Connections, replication, WAL archiving, table sizes, top statements and the three "
        "recoverability signals. Generated by scripts/deploy_gen.py.",
        "tags": ["postgresql", "pgtool"],
        "timezone": "utc",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "1m",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": datasource_vars},
        "annotations": {"list": []},
        "links": [],
        "panels": b.panels,
    }


def expected_files() -> dict[Path, str]:
    files = {DASHBOARD: json.dumps(build_dashboard(), indent=2, sort_keys=False) + "\n"}
    for source, copy in COPIES.items():
        files[REPO / copy] = (REPO / source).read_text()
    files[PGBOUNCER_INI] = re.sub(
        r"^max_db_connections = .*$",
        f"max_db_connections = {deploy_sizing.MAX_DB_CONNECTIONS}",
        PGBOUNCER_INI.read_text(),
        count=1,
        flags=re.MULTILINE,
    )
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description="Write (or --check) the generated deployment files.")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    stale = [path for path, text in expected_files().items() if not path.exists() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(
                f"out of date: {path.relative_to(REPO)} (run python scripts/deploy_gen.py)", file=sys.stderr
            )
        return 1 if stale else 0
    for path, text in expected_files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
