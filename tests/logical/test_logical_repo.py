"""`pgtool backup --repo` and `pgtool verify --repo` against a real cluster and real stores (local, moto's
S3, Azurite): streaming dumps, the drill on a downloaded copy, retention, damage, failures."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from logical_helpers import throwaway_databases

from pgharness import run_pgtool
from pgtool.logical import dumps, repo_catalog
from pgtool.repo import dump_prefix


def backup_repo(cluster, backend, *names, extra=(), dsn=None, env=None):
    args = ["backup", "--dsn", dsn or cluster.dsn()]
    for name in names:
        args += ["--database", name]
    return run_pgtool(*args, *extra, env=backend.cli_env(**(env or {})))


def verify_repo(cluster, backend, *names, extra=(), env=None):
    args = ["verify", "--dsn", cluster.dsn()]
    for name in names:
        args += ["--database", name]
    return run_pgtool(*args, *extra, env=backend.cli_env(**(env or {})))


def last_error(proc) -> str:
    return json.loads(proc.stderr.strip().splitlines()[-1])["error"]


def _end_to_end(cluster, make_db, backend, key_env):
    db = make_db(rows=3000)
    proc = backup_repo(cluster, backend, db.name, env=key_env)
    assert proc.returncode == 0, proc.stderr
    assert f"ok      {db.name}  dumps/{db.name}/" in proc.stdout
    repo = backend.open(key_file=key_env.get("PGTOOL_REPO_KEY_FILE"), create=False)
    (found,) = repo_catalog.complete_dumps(repo, db.name)
    manifest = json.loads(repo.read_bytes(found.manifest_object))
    assert {t["name"]: t["rows"] for t in manifest["tables"]}["items"] == 3000
    assert manifest["database"] == db.name and len(manifest["sha256"]) == 64
    assert not found.has_verified

    proc = verify_repo(cluster, backend, db.name, env=key_env)
    assert proc.returncode == 0, proc.stderr
    assert f"ok      {db.name}  dumps/{db.name}/{found.stamp}/dump in " in proc.stdout
    assert "3000 rows" in proc.stdout
    (found,) = repo_catalog.complete_dumps(repo, db.name)
    assert repo_catalog.is_verified(repo, found)
    records = [i.name for i in repo.list("evidence/dumps/")]
    assert len(records) == 1
    record = json.loads(repo.read_bytes(records[0]))
    assert record["outcome"] == "passed" and record["seq"] == 1
    assert record["databases"][0]["dump"]["sha256"] == manifest["sha256"]
    assert not throwaway_databases(cluster)
    return repo


def test_backup_and_verify_through_each_backend(cluster, make_db, backend):
    _end_to_end(cluster, make_db, backend, {})


def test_encrypted_repository_end_to_end_and_a_wrong_key(cluster, make_db, backend, tmp_path):
    key = tmp_path / "repo.key"
    key.write_bytes(os.urandom(32))
    repo = _end_to_end(cluster, make_db, backend, {"PGTOOL_REPO_KEY_FILE": str(key)})
    assert repo.encrypted

    wrong = tmp_path / "wrong.key"
    wrong.write_bytes(os.urandom(32))
    for env in ({"PGTOOL_REPO_KEY_FILE": str(wrong)}, {}):
        proc = verify_repo(cluster, backend, env=env)
        assert proc.returncode == 1, proc.stderr
        error = last_error(proc)
        assert "key" in error and ("wrong key" in error or "no key was given" in error), error
        assert "Traceback" not in proc.stderr


def test_a_flipped_byte_fails_verify_naming_the_object(cluster, make_db, local_backend):
    db = make_db(rows=2000)
    assert backup_repo(cluster, local_backend, db.name).returncode == 0
    assert verify_repo(cluster, local_backend, db.name).returncode == 0
    repo = local_backend.open(create=False)
    (found,) = repo_catalog.complete_dumps(repo, db.name)
    stored = Path(local_backend.url) / found.dump_object
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored.write_bytes(bytes(data))

    proc = verify_repo(cluster, local_backend, db.name)

    assert proc.returncode == 1, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("FAILED"))
    assert found.dump_object in line and local_backend.url in line, line
    assert "Traceback" not in proc.stderr
    assert not repo_catalog.complete_dumps(repo, db.name)[0].has_verified  # no longer verified
    assert not throwaway_databases(cluster)  # never restored
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob("pgtool-verify-*"))


def test_pg_dump_failing_mid_stream_leaves_no_listed_dump(cluster, login_role, make_db, local_backend):
    db = make_db(rows=300_000)  # "items" is dumped (streamed) before "zz_guarded" fails
    db.execute(f'GRANT SELECT ON items TO "{login_role}"')
    db.execute("CREATE TABLE zz_guarded (x int)")
    db.execute("INSERT INTO zz_guarded VALUES (1)")
    db.execute(f'GRANT SELECT ON zz_guarded TO "{login_role}"')
    db.execute("ALTER TABLE zz_guarded ENABLE ROW LEVEL SECURITY")
    db.execute("CREATE POLICY p ON zz_guarded USING (x > 0)")  # pg_dump's COPY fails with row_security off

    proc = backup_repo(cluster, local_backend, db.name, dsn=cluster.dsn(user=login_role))

    assert proc.returncode == 1, proc.stderr
    error = last_error(proc)
    assert "pg_dump" in error and "row-level security" in error, error
    repo = local_backend.open(create=False)
    assert repo_catalog.list_dumps(repo, db.name) == []
    # Nothing visible, the lock removed too; the globals are stored all the same (taken separately).
    assert [i.name for i in repo.list("dumps/") if not i.name.startswith("dumps/.globals/")] == []


def _age(repo, database, found, days_ago, *, verified=False):
    """A copy of a complete dump under an older stamp (objects written through the repository)."""
    stamp = dumps.format_stamp(datetime.now(UTC) - timedelta(days=days_ago))
    prefix = dump_prefix(database, stamp)
    repo.put_stream(prefix + "dump", [repo.read_bytes(found.dump_object)])  # small test dumps
    manifest = json.loads(repo.read_bytes(found.manifest_object))
    manifest["stamp"] = stamp
    if verified:
        record = {"stamp": stamp, "sha256": manifest["sha256"]}
        repo.put_if_absent(prefix + "verified.json", json.dumps(record).encode())
    repo.put_if_absent(prefix + "manifest.json", json.dumps(manifest).encode())
    return stamp


def test_retention_on_the_repository_keeps_the_newest_and_the_newest_verified(cluster, make_db, backend):
    db = make_db(rows=10)
    assert backup_repo(cluster, backend, db.name).returncode == 0
    repo = backend.open(create=False)
    (first,) = repo_catalog.complete_dumps(repo, db.name)
    oldest = _age(repo, db.name, first, 30)
    verified = _age(repo, db.name, first, 20, verified=True)
    old = _age(repo, db.name, first, 10)
    # a dump object without its manifest (a killed run): never listed as complete, never deleted
    orphan = dumps.format_stamp(datetime.now(UTC) - timedelta(days=40))
    repo.put_stream(dump_prefix(db.name, orphan) + "dump", [b"partial"])

    proc = backup_repo(cluster, backend, db.name, extra=("--retention-days", "5"))

    assert proc.returncode == 0, proc.stderr
    stamps = [d.stamp for d in repo_catalog.complete_dumps(repo, db.name)]
    assert oldest not in stamps and old not in stamps
    assert verified in stamps and first.stamp in stamps and len(stamps) == 3
    assert proc.stdout.count("(retention)") == 2
    assert repo.exists(dump_prefix(db.name, orphan) + "dump")
    assert "dump without a manifest" in proc.stderr


def test_dest_and_repo_together_or_neither_is_a_usage_error(cluster, local_backend, tmp_path):
    both = run_pgtool("backup", "--dsn", cluster.dsn(), "--dest", str(tmp_path), env=local_backend.cli_env())
    assert both.returncode == 2, both.stderr
    assert "exactly one of --dest and --repo" in both.stderr
    neither = run_pgtool("backup", "--dsn", cluster.dsn(), env=local_backend.env)
    assert neither.returncode == 2, neither.stderr
    verify_both = run_pgtool(
        "verify", "--dsn", cluster.dsn(), "--backup-dir", str(tmp_path), env=local_backend.cli_env()
    )
    assert verify_both.returncode == 2, verify_both.stderr


def test_a_held_repository_lock_stops_a_second_backup(cluster, make_db, local_backend):
    db = make_db(rows=5)
    repo = local_backend.open()
    holder = {"host": "elsewhere", "pid": 1, "started_at": datetime.now(UTC).isoformat()}
    repo.put_if_absent("dumps/backup.lock", json.dumps(holder).encode())

    busy = backup_repo(cluster, local_backend, db.name)
    assert busy.returncode != 0 and "another pgtool backup is running" in last_error(busy)
    assert "host elsewhere" in last_error(busy)

    repo.delete("dumps/backup.lock")
    stale = {**holder, "started_at": (datetime.now(UTC) - timedelta(hours=13)).isoformat()}
    repo.put_if_absent("dumps/backup.lock", json.dumps(stale).encode())
    proc = backup_repo(cluster, local_backend, db.name)
    assert proc.returncode == 0, proc.stderr
    assert not repo.exists("dumps/backup.lock")
