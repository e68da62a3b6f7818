"""`pgtool backup --format directory --jobs-per-dump N` (pg_dump -Fd -j N) and `pgtool verify` of such
dumps, in a backup directory and in repositories (local, moto's S3), on a real cluster: every file
checksummed and named when damaged or missing, retention like any dump."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from logical_helpers import backup, newest_dump, throwaway_databases, verify

from pgharness import run_pgtool
from pgtool.logical import dumps, repo_catalog
from pgtool.logical.dump_directory import tree_digest
from pgtool.logical.dump_manifest import sha256_file
from repo_backends import make_backend

DIR_ARGS = ("--format", "directory", "--jobs-per-dump", "2")


def _two_tables(make_db):
    db = make_db(rows=3000)
    db.execute("CREATE TABLE other (id int PRIMARY KEY, v text)")
    db.execute("INSERT INTO other SELECT g, md5(g::text) FROM generate_series(1, 2000) g")
    return db


def _backup_dir_dump(cluster, make_db, tmp_path):
    db = _two_tables(make_db)
    proc = backup(cluster, tmp_path, db.name, extra=DIR_ARGS)
    assert proc.returncode == 0, proc.stderr
    dump = newest_dump(tmp_path, db.name)
    return db, dump


def test_directory_dump_with_two_jobs_verifies(cluster, make_db, tmp_path):
    db, dump = _backup_dir_dump(cluster, make_db, tmp_path)
    assert dump.is_dir() and dump.name.endswith(".dir")
    assert not list(dump.parent.glob(".*partial"))
    manifest = json.loads(dumps.manifest_path(dump).read_text())
    assert manifest["dump_format"] == "directory"
    files = manifest["files"]
    assert "toc.dat" in files and len(files) >= 3  # toc.dat + one data file per table
    assert set(files) == {p.name for p in dump.iterdir()}
    assert manifest["sha256"] == tree_digest(files)
    listed = dumps.checksum_path(dump).read_text().splitlines()
    assert sorted(listed) == sorted(f"{d}  {dump.name}/{n}" for n, d in files.items())
    proc = verify(cluster, tmp_path, db.name)
    assert proc.returncode == 0, proc.stderr
    assert "5000 rows" in proc.stdout, proc.stdout
    assert dumps.is_verified(dumps.list_dumps(tmp_path)[db.name][-1])
    assert not throwaway_databases(cluster)


def _data_file(dump: Path) -> Path:
    return sorted(p for p in dump.iterdir() if p.name != "toc.dat")[-1]


def test_a_flipped_byte_in_one_file_fails_verify_naming_it(cluster, make_db, tmp_path):
    db, dump = _backup_dir_dump(cluster, make_db, tmp_path)
    victim = _data_file(dump)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    proc = verify(cluster, tmp_path, db.name)
    assert proc.returncode == 1
    assert f"checksum mismatch in {dump.name}/{victim.name}" in proc.stdout + proc.stderr
    assert not dumps.verified_path(dump).exists()
    assert not throwaway_databases(cluster)


def test_a_missing_file_fails_verify_naming_it(cluster, make_db, tmp_path):
    db, dump = _backup_dir_dump(cluster, make_db, tmp_path)
    victim = _data_file(dump)
    victim.unlink()
    proc = verify(cluster, tmp_path, db.name)
    assert proc.returncode == 1
    assert f"file {victim.name} missing from {dump.name}" in proc.stdout + proc.stderr


def test_jobs_per_dump_needs_the_directory_format(cluster, make_db, tmp_path):
    db = make_db(rows=10)
    proc = backup(cluster, tmp_path, db.name, extra=("--jobs-per-dump", "2"))
    assert proc.returncode == 2
    assert "--jobs-per-dump needs --format directory" in proc.stderr
    assert not list(tmp_path.iterdir())


def test_retention_removes_old_directory_dumps_and_keeps_the_newest(cluster, make_db, tmp_path):
    db, dump = _backup_dir_dump(cluster, make_db, tmp_path)
    # An old copy under a stamp 10 days back, as pgtool would have named it.
    stamp = dumps.format_stamp(datetime.now(UTC) - timedelta(days=10))
    old = dump.parent / dumps.dir_dump_name(db.name, stamp)
    shutil.copytree(dump, old)
    manifest = json.loads(dumps.manifest_path(dump).read_text())
    manifest.update(dump_file=old.name, stamp=stamp)
    dumps.manifest_path(old).write_text(json.dumps(manifest))
    dumps.checksum_path(old).write_text(dumps.checksum_path(dump).read_text().replace(dump.name, old.name))
    assert [i.path for i in dumps.list_dumps(tmp_path)[db.name]] == [old, dump]
    proc = backup(cluster, tmp_path, db.name, extra=(*DIR_ARGS, "--retention-days", "5"))
    assert proc.returncode == 0, proc.stderr
    assert f"removed {old} (retention)" in proc.stdout
    assert not old.exists() and not dumps.manifest_path(old).exists()
    assert not dumps.checksum_path(old).exists() and not list(old.parent.glob(".*partial"))
    left = dumps.list_dumps(tmp_path)[db.name]
    assert len(left) == 2 and dump in [i.path for i in left]


@pytest.fixture(params=["local", "s3"])
def dir_backend(request, tmp_path):
    return make_backend(request.param, request, tmp_path)


def _repo_run(cluster, backend, command, *args):
    return run_pgtool(command, "--dsn", cluster.dsn(), *args, env=backend.cli_env())


def test_directory_dump_into_a_repository_verifies(cluster, make_db, dir_backend, tmp_path):
    db = _two_tables(make_db)
    before = set(os.listdir(tempfile_root()))
    proc = _repo_run(cluster, dir_backend, "backup", "--database", db.name, *DIR_ARGS)
    assert proc.returncode == 0, proc.stderr
    assert not {n for n in set(os.listdir(tempfile_root())) - before if n.startswith("pgtool-dump-")}
    repo = dir_backend.open(create=False)
    (found,) = repo_catalog.complete_dumps(repo, db.name)
    assert found.is_directory and "toc.dat" in found.dir_files and len(found.dir_files) >= 3
    assert f"ok      {db.name}  dumps/{db.name}/{found.stamp}/dir/" in proc.stdout
    manifest = json.loads(repo.read_bytes(found.manifest_object))
    assert manifest["dump_format"] == "directory" and set(manifest["files"]) == set(found.dir_files)
    assert manifest["sha256"] == tree_digest(manifest["files"])
    proc = _repo_run(cluster, dir_backend, "verify", "--database", db.name, "--jobs", "2")
    assert proc.returncode == 0, proc.stderr
    assert "5000 rows" in proc.stdout, proc.stdout
    (found,) = repo_catalog.complete_dumps(repo, db.name)
    assert repo_catalog.is_verified(repo, found)
    assert not throwaway_databases(cluster)


def tempfile_root():
    return tempfile.gettempdir()


def test_a_missing_object_of_a_repository_directory_dump_fails_verify(cluster, make_db, local_backend):
    db = _two_tables(make_db)
    assert _repo_run(cluster, local_backend, "backup", "--database", db.name, *DIR_ARGS).returncode == 0
    repo = local_backend.open(create=False)
    (found,) = repo_catalog.complete_dumps(repo, db.name)
    victim = sorted(f for f in found.dir_files if f != "toc.dat")[-1]
    repo.delete(f"{found.prefix}dir/{victim}")
    proc = _repo_run(cluster, local_backend, "verify", "--database", db.name)
    assert proc.returncode == 1
    assert f"file {victim} missing from" in proc.stdout + proc.stderr


def test_repository_retention_removes_every_file_of_an_old_directory_dump(cluster, make_db, local_backend):
    db = _two_tables(make_db)
    assert _repo_run(cluster, local_backend, "backup", "--database", db.name, *DIR_ARGS).returncode == 0
    repo = local_backend.open(create=False)
    (found,) = repo_catalog.complete_dumps(repo, db.name)
    # The same objects under a stamp 10 days back: an old dump as pgtool would have stored it.
    old_stamp = dumps.format_stamp(datetime.now(UTC) - timedelta(days=10))
    old_prefix = found.prefix.replace(found.stamp, old_stamp)
    for name in [*found.content_objects, found.manifest_object]:
        repo.put_if_absent(name.replace(found.prefix, old_prefix), repo.read_bytes(name))
    assert [d.stamp for d in repo_catalog.complete_dumps(repo, db.name)] == [old_stamp, found.stamp]
    proc = _repo_run(
        cluster, local_backend, "backup", "--database", db.name, *DIR_ARGS, "--retention-days", "5"
    )
    assert proc.returncode == 0, proc.stderr
    assert "(retention)" in proc.stdout
    assert not repo.list(old_prefix)
    assert len(repo_catalog.complete_dumps(repo, db.name)) == 2


def test_fetch_copies_a_directory_dump_out_file_by_file(cluster, make_db, local_backend, tmp_path):
    db = _two_tables(make_db)
    assert _repo_run(cluster, local_backend, "backup", "--database", db.name, *DIR_ARGS).returncode == 0
    repo = local_backend.open(create=False)
    (found,) = repo_catalog.complete_dumps(repo, db.name)
    dest = tmp_path / "fetched"
    env = local_backend.cli_env()
    proc = run_pgtool("fetch", "dump", "--database", db.name, "--to", str(dest), env=env)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in dest.iterdir()) == sorted(found.dir_files)
    manifest = json.loads(repo.read_bytes(found.manifest_object))
    assert tree_digest({p.name: sha256_file(p) for p in dest.iterdir()}) == manifest["sha256"]
