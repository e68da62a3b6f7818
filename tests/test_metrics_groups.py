"""Per-database series on a real Pushgateway: a run over some databases replaces only theirs."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway

from pgtool.obs.metrics import RunReport, push_run_result

JOB = {"job": "pgtool-backup"}


def _report(**databases: int) -> RunReport:
    report = RunReport()
    for name, ok in databases.items():
        report.gauge("pgtool_backup_database_success", "1 if dumped", ok, database=name)
        report.gauge("pgtool_backup_database_size_bytes", "size", 100 + ok, database=name)
    report.gauge("pgtool_backup_kept_total", "dumps kept", 7)
    return report


def test_a_subset_run_keeps_the_other_databases_series(pushgateway):
    assert push_run_result(
        pushgateway.url, "backup", success=True, duration_seconds=1, report=_report(a=1, b=1)
    )
    # `backup -d a`, which fails: b's series (and its alerts) must stay as they were.
    assert push_run_result(pushgateway.url, "backup", success=False, duration_seconds=1, report=_report(a=0))
    assert pushgateway.samples("pgtool_backup_database_success", database="a", **JOB) == [0.0]
    assert pushgateway.samples("pgtool_backup_database_success", database="b", **JOB) == [1.0]
    assert pushgateway.samples("pgtool_backup_database_size_bytes", database="b", **JOB) == [101.0]
    assert pushgateway.samples("pgtool_last_run_success", **JOB) == [0.0]
    assert len(pushgateway.samples("pgtool_last_success_timestamp_seconds", **JOB)) == 1
    assert pushgateway.samples("pgtool_backup_kept_total", **JOB) == [7.0]


def test_series_pushed_by_older_versions_under_the_job_alone_are_moved(pushgateway):
    old = CollectorRegistry()
    gauge = Gauge("pgtool_backup_database_success", "1 if dumped", ["database"], registry=old)
    gauge.labels("a").set(1)
    gauge.labels("b").set(1)
    Gauge("pgtool_last_success_timestamp_seconds", "last success", registry=old).set(1234.5)
    pushadd_to_gateway(pushgateway.url, job="pgtool-backup", registry=old)

    assert push_run_result(pushgateway.url, "backup", success=False, duration_seconds=1, report=_report(a=0))
    assert pushgateway.samples("pgtool_backup_database_success", database="a", **JOB) == [0.0]
    assert pushgateway.samples("pgtool_last_success_timestamp_seconds", **JOB) == [1234.5]
