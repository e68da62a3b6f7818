"""`pgtool fetch list|dump|globals` against a real cluster's `pgtool backup --repo` on each backend: what it
writes is the dump pg_restore reads and the globals psql runs; damage and a manifest that disagrees leave
no file behind; bad arguments are one line and exit 2."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from pgharness import run_pgtool
from pgtool.logical import repo_catalog
from pgtool.repo import decode_db


def fetch(backend, *args, env=None):
    return run_pgtool("fetch", *args, env=backend.cli_env(**(env or {})))


def last_error(proc) -> str:
    return json.loads(proc.stderr.strip().splitlines()[-1])["error"]


def test_fetch_lists_and_copies_out_dumps_and_globals(cluster, make_db, backend, tmp_path):
    key = tmp_path / "repo.key"
    key.write_bytes(os.urandom(32))
    env = {"PGTOOL_REPO_KEY_FILE": str(key)}
    db = make_db(rows=250)
    odd = make_db(rows=3, prefix="lg.odd")
    for name in (db.name, odd.name):
        proc = run_pgtool("backup", "--dsn", cluster.dsn(), "--database", name, env=backend.cli_env(**env))
        assert proc.returncode == 0, proc.stderr

    listed = fetch(backend, "list", env=env)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert sorted(decode_db(line) for line in lines) == sorted([db.name, odd.name])
    assert all(
        set(line) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-%")
        for line in lines
    )

    repo = backend.open(key_file=key, create=False)
    (stored,) = repo_catalog.complete_dumps(repo, odd.name)
    manifest = json.loads(repo.read_bytes(stored.manifest_object))
    dest = tmp_path / "odd.dump"
    proc = fetch(backend, "dump", "--database", odd.name, "--to", str(dest), env=env)
    assert proc.returncode == 0, proc.stderr
    assert "ok      dump  lg.odd" in proc.stdout and stored.stamp in proc.stdout
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == manifest["sha256"]
    assert dest.stat().st_mode & 0o777 == 0o600
    toc = subprocess.run(
        [str(cluster.binaries.path("pg_restore")), "--list", str(dest)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "TABLE public items" in toc

    # an existing destination is never replaced
    again = fetch(backend, "dump", "--database", odd.name, "--to", str(dest), env=env)
    assert again.returncode == 2 and "already exists" in last_error(again)

    # --stamp picks that dump; an unknown one is nothing to fetch (1), with the stamps there are
    by_stamp = tmp_path / "by-stamp.dump"
    proc = fetch(backend, "dump", "-d", odd.name, "--stamp", stored.stamp, "--to", str(by_stamp), env=env)
    assert proc.returncode == 0, proc.stderr
    missing = fetch(
        backend, "dump", "-d", odd.name, "--stamp", "20000101T000000Z", "--to", str(tmp_path / "x"), env=env
    )
    assert missing.returncode == 1 and stored.stamp in last_error(missing)
    assert not (tmp_path / "x").exists()
    nobody = fetch(backend, "dump", "-d", "no such database", "--to", str(tmp_path / "y"), env=env)
    assert nobody.returncode == 1 and "no complete dump of database 'no such database'" in last_error(nobody)

    globals_file = tmp_path / "globals.sql"
    proc = fetch(backend, "globals", "--to", str(globals_file), env=env)
    assert proc.returncode == 0, proc.stderr
    text = globals_file.read_text()
    assert "CREATE ROLE postgres;" in text and "PASSWORD" not in text


def test_fetch_refuses_a_dump_its_manifest_disowns(cluster, make_db, backend, tmp_path):
    db = make_db(rows=10)
    proc = run_pgtool("backup", "--dsn", cluster.dsn(), "--database", db.name, env=backend.cli_env())
    assert proc.returncode == 0, proc.stderr
    repo = backend.open(create=False)
    (stored,) = repo_catalog.complete_dumps(repo, db.name)
    manifest = json.loads(repo.read_bytes(stored.manifest_object))
    manifest["sha256"] = "0" * 64
    repo.delete(stored.manifest_object)
    repo.put_if_absent(stored.manifest_object, json.dumps(manifest).encode())
    dest = tmp_path / "d.dump"
    proc = fetch(backend, "dump", "--database", db.name, "--to", str(dest))
    assert proc.returncode == 1
    assert "does not match the sha256 its manifest recorded" in last_error(proc)
    assert not dest.exists() and not list(tmp_path.glob(".d.dump*"))


def test_fetch_usage_errors(tmp_path: Path, backend) -> None:
    cases = [
        (["dump", "--to", str(tmp_path / "a")], "--database goes with fetch dump"),
        (["globals"], "needs --to"),
        (["list", "--database", "x"], "takes no --database"),
    ]
    for args, message in cases:
        proc = fetch(backend, *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in last_error(proc)
        assert "Traceback" not in proc.stderr
    no_repo = run_pgtool("fetch", "list", env={"PGTOOL_REPO": ""})
    assert no_repo.returncode == 2 and "fetch needs --repo" in last_error(no_repo)
