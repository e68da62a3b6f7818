"""Real base drills leave evidence: `pgtool verify --base` appends a chained record, pass or fail."""

from __future__ import annotations

import json

from physical_support import ArchivingPrimary

from pgharness import run_pgtool
from pgtool.logical.dump_manifest import sha256_file
from pgtool.physical.base_catalog import MANIFEST_FILE, list_base_backups
from pgtool.wal.listing import list_archive


def test_base_drills_append_chained_records(primary: ArchivingPrimary) -> None:
    primary.sql("CREATE TABLE t (i int PRIMARY KEY)")
    primary.basebackup()
    for n in range(2):
        primary.sql("INSERT INTO t SELECT generate_series(%s::int, %s::int)", (n * 1000, n * 1000 + 999))
        primary.switch_wal()
    args = [
        "verify",
        "--base",
        "--base-dir",
        str(primary.base_dir),
        "--archive-dir",
        str(primary.archive_dir),
    ]
    passed = run_pgtool(*args, "--amcheck")
    assert passed.returncode == 0, passed.stderr
    backup = list_base_backups(primary.base_dir)[-1]
    segments = sorted(i.name for i in list_archive(primary.archive_dir) if i.kind == "segment")
    newest = segments[-1]
    missing = next(s for s in segments if s > backup.stop_wal_file)
    (primary.archive_dir / missing).unlink()  # a gap: the next drill cannot replay
    failed = run_pgtool(*args)
    assert failed.returncode == 1

    evidence = primary.base_dir / ".evidence"
    first, second = (json.loads(p.read_bytes()) for p in sorted(evidence.glob("*.json")))
    assert first["kind"] == "base" and first["outcome"] == "passed"
    assert first["backup"]["id"] == backup.id
    assert first["backup"]["backup_manifest_sha256"] == sha256_file(backup.path / MANIFEST_FILE)
    assert first["wal"]["last_segment"] == newest and first["wal"]["replayed_to_lsn"]
    assert first["wal"]["recovery_point_lsn"] and first["wal"]["recovery_point_time"]
    assert first["durations"]["replay_seconds"] > 0
    assert {c["check"]: c["result"] for c in first["checks"]}["amcheck"] == "passed"
    assert first["postgres_version"] == backup.server_version
    assert second["outcome"] == "failed" and f"segment {missing} is missing" in second["error"]
    assert second["backup"]["id"] == backup.id and second["prev_sha256"] == first["sha256"]
    check = run_pgtool("evidence", "verify", "--dir", str(evidence))
    assert check.returncode == 0 and "2 records" in check.stdout, check.stdout + check.stderr
