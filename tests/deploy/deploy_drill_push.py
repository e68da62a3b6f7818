"""What a real `pgtool verify --base` pushes (the base drill's recoverability gauges), for the metric-name
checks: an archiving PostgreSQL 15, a base backup, a committed row, a WAL switch, the drill."""

from __future__ import annotations

import shlex
from typing import Any

from deploy_support import parse_exposition


def base_drill_pushes(pushgateway_server: Any) -> set[str]:
    from pgharness import pgtool_argv, retry, rmtree, run_pgtool, server_writable_dir, start_cluster
    from pgtool.pg.privileges import make_server_dir

    pushgateway_server.wipe()
    workdir = server_writable_dir("pgtool-drill-push-")
    archive = make_server_dir(workdir / "archive", 0o777)
    command = f"{shlex.quote(pgtool_argv()[0])} archive-wal %p %f --archive-dir {shlex.quote(str(archive))}"
    cluster = start_cluster(
        15, settings={"archive_mode": "on", "archive_command": command, "wal_level": "replica"}
    )
    try:
        base = run_pgtool("basebackup", "--dsn", cluster.dsn(), "--dest", str(workdir / "base"))
        assert base.returncode == 0, base.stderr[-2000:]
        with cluster.connect(autocommit=True) as conn:
            conn.execute("CREATE TABLE drilled AS SELECT 1 AS x")
            name = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]

        def archived() -> bool:
            with cluster.connect(autocommit=True) as conn:
                last = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()[0]
            return last is not None and last >= name

        retry(archived, timeout=60)
        drill = run_pgtool(
            "verify",
            "--base",
            "--base-dir",
            str(workdir / "base"),
            "--archive-dir",
            str(archive),
            "--pushgateway",
            pushgateway_server.url,
        )
        assert drill.returncode == 0, drill.stderr[-2000:]
        return set(parse_exposition(pushgateway_server.metrics_text()))
    finally:
        cluster.cleanup()
        rmtree(workdir)
        pushgateway_server.wipe()
