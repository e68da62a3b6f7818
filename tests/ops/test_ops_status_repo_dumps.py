"""status --repo reads the dumps' freshness from the repository (real `pgtool backup --repo` runs)."""

from __future__ import annotations

import json

from pgharness import run_pgtool


def _status(cluster, url: str, env: dict[str, str], *extra: str):
    proc = run_pgtool(
        "status", "--dsn", cluster.dsn(), "--repo", url, "--k8s", "off", "--format", "json", *extra, env=env
    )
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout)["sections"]["dumps"], json.loads(proc.stdout)["problems"]


def test_dumps_in_the_repository_are_checked(cluster, local_backend):
    url, env = local_backend.url, local_backend.env
    with cluster.connect(autocommit=True) as conn:
        conn.execute("CREATE DATABASE rpo_dumped")
    try:
        backup = run_pgtool("backup", "--dsn", cluster.dsn(), "--repo", url, env=env)
        assert backup.returncode == 0, backup.stderr[-2000:]
        with cluster.connect(autocommit=True) as conn:
            conn.execute("CREATE DATABASE rpo_undumped")
        dumps, problems = _status(cluster, url, env)
        assert dumps["state"] == "problem" and dumps["repo"]
        rows = {row["database"]: row for row in dumps["databases"]}
        assert rows["rpo_dumped"]["count"] == 1 and 0 <= rows["rpo_dumped"]["age_seconds"] < 600
        assert rows["rpo_dumped"]["size_bytes"] > 0 and "checksum_file" not in rows["rpo_dumped"]
        assert rows["rpo_undumped"]["newest"] is None
        messages = [p["message"] for p in problems if p["area"] == "dumps"]
        assert messages == [f"database rpo_undumped has no complete dump in {dumps['repo']}"], messages
        # A tighter limit makes the fresh dump stale; --exclude-database leaves the other out.
        dumps, problems = _status(
            cluster, url, env, "--max-dump-age", "0s", "--exclude-database", "rpo_undumped"
        )
        messages = [p["message"] for p in problems if p["area"] == "dumps"]
        assert any(m.startswith("newest dump of rpo_dumped is ") for m in messages), messages
        assert not any("rpo_undumped" in m for m in messages)
    finally:
        with cluster.connect(autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS rpo_dumped")
            conn.execute("DROP DATABASE IF EXISTS rpo_undumped")


def test_unreadable_repository_is_one_dumps_problem(cluster, tmp_path):
    dumps, problems = _status(cluster, str(tmp_path / "nothing"), {})
    assert [p["area"] for p in problems if p["message"].startswith("cannot read the repository's dumps")] == [
        "dumps"
    ]
    assert "databases" not in dumps
