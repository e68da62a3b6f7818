"""Real dump drills leave evidence: `pgtool verify` appends a chained record per run, pass or fail."""

from __future__ import annotations

import json
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from logical_helpers import backup, newest_dump, verify

from pgharness import run_pgtool
from pgtool.logical import dumps
from pgtool.logical.dump_manifest import read_checksum


def _records(evidence: Path) -> list[dict]:
    return [json.loads(p.read_bytes()) for p in sorted(evidence.glob("*.json"))]


def test_passing_and_failing_drills_leave_a_signed_chain(cluster, pg_major, make_db, tmp_path):
    db = make_db(rows=120)
    dest = tmp_path / "dumps"
    assert backup(cluster, dest, db.name).returncode == 0
    key = Ed25519PrivateKey.generate()
    key_file = tmp_path / "evidence.key"
    key_file.write_bytes(key.private_bytes_raw())
    public = tmp_path / "evidence.pub"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )

    passed = verify(cluster, dest, db.name, extra=("--amcheck", "--evidence-key-file", str(key_file)))
    assert passed.returncode == 0, passed.stderr
    dump = newest_dump(dest, db.name)
    dump.write_bytes(dump.read_bytes()[:-100] + b"\0" * 100)  # damage: the next drill fails its checksum
    failed = run_pgtool(
        "verify", "--dsn", cluster.dsn(), "--backup-dir", str(dest), "--database", db.name,
        env={"PGTOOL_EVIDENCE_KEY_FILE": str(key_file)},
    )  # fmt: skip
    assert failed.returncode == 1

    evidence = dest / ".evidence"
    first, second = _records(evidence)
    assert first["kind"] == "dump" and first["outcome"] == "passed"
    (entry,) = first["databases"]
    assert entry["database"] == db.name
    assert entry["dump"]["file"] == dump.name
    assert entry["dump"]["sha256"] == read_checksum(dumps.checksum_path(dump))
    checks = {c["check"]: c for c in entry["checks"]}
    assert checks["row_counts"]["rows"] == 120
    assert checks["amcheck"]["result"] == "passed" and checks["amcheck"]["indexes"] == 1
    assert first["postgres_version"].split(".")[0] == str(pg_major)
    assert first["host"] == os.uname().nodename and first["pgtool_version"]
    assert second["outcome"] == "failed" and "checksum mismatch" in second["error"]
    assert second["prev_sha256"] == first["sha256"] and "signature" in second

    ok = run_pgtool("evidence", "verify", "--dir", str(evidence), "--public-key-file", str(public))
    assert ok.returncode == 0 and "2 records, 2 signatures verified" in ok.stdout, ok.stdout + ok.stderr
    report = run_pgtool("evidence", "report", "--dir", str(evidence), "--since", "2000-01-01", "-f", "json")
    assert (json.loads(report.stdout)["passed"], json.loads(report.stdout)["failed"]) == (1, 1)


def test_a_drill_whose_evidence_cannot_be_written_fails(cluster, make_db, tmp_path):
    db = make_db(rows=10)
    dest = tmp_path / "dumps"
    assert backup(cluster, dest, db.name).returncode == 0
    # A file where the evidence directory belongs: the record cannot be written, whoever runs the test.
    (dest / ".evidence").write_text("not a directory")
    proc = verify(cluster, dest, db.name)
    assert proc.returncode == 1
    assert "cannot append evidence" in proc.stderr
    assert f"ok      {db.name}" not in proc.stdout  # the drill passed but the run is not a success


def test_a_bad_signing_key_fails_before_the_drill(cluster, make_db, tmp_path):
    db = make_db(rows=10)
    dest = tmp_path / "dumps"
    assert backup(cluster, dest, db.name).returncode == 0
    bad = tmp_path / "bad.key"
    bad.write_bytes(b"not a key")
    proc = verify(cluster, dest, db.name, extra=("--evidence-key-file", str(bad)))
    assert proc.returncode == 2 and "neither a PEM private key nor 32 raw bytes" in proc.stderr
    assert not (dest / ".evidence").exists()
