"""verify drills in a throwaway cluster of its own (issue 19): never on the --dsn server, globals restored
first, a role-owned tenant-restricted database back with its owner, privileges, settings and comment;
--target-dsn drills on a scratch server; backup stores the globals, passwords only when encrypted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
from logical_helpers import backup, rewrite_manifest, throwaway_databases

from pgharness import pgtool_argv, retry, rmtree, run_pgtool, server_writable_dir
from pgtool.logical import dumps, globals_dump, repo_catalog

OK_PROPERTIES = "owner, privileges and settings as recorded"


@pytest.fixture
def tenant_db(cluster):
    """A database owned by a role, CONNECT revoked from PUBLIC and granted to a tenant role, with
    per-database and per-role settings, a comment, and a table the tenant may only read."""
    tag = uuid.uuid4().hex[:8]
    owner, tenant, name = f"lg_owner_{tag}", f"lg_tenant_{tag}", f"lg_tenant_db_{tag}"
    with cluster.connect() as conn:
        conn.execute(f'CREATE ROLE "{owner}" LOGIN')
        conn.execute(f'CREATE ROLE "{tenant}" LOGIN')
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"')
        conn.execute(f'REVOKE CONNECT, TEMPORARY ON DATABASE "{name}" FROM PUBLIC')
        conn.execute(f'GRANT CONNECT ON DATABASE "{name}" TO "{tenant}"')
        conn.execute(f"ALTER DATABASE \"{name}\" SET work_mem = '8MB'")
        conn.execute(f'ALTER DATABASE "{name}" SET search_path = "$user", public')
        conn.execute(f'ALTER ROLE "{tenant}" IN DATABASE "{name}" SET statement_timeout = \'5min\'')
        conn.execute(f"COMMENT ON DATABASE \"{name}\" IS 'tenant data'")
    with cluster.connect(name) as conn:
        conn.execute(f'SET ROLE "{owner}"')
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, 500) g")
        conn.execute(f'GRANT SELECT ON items TO "{tenant}"')
    yield name, owner, tenant
    with cluster.connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for role in (tenant, owner):
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


@pytest.fixture
def scratch():
    """$TMPDIR for the run: where the own cluster lives (the server user must reach it)."""
    path = server_writable_dir("pgtool-drill-test-")
    yield path
    rmtree(path)


def _no_createdb_dsn(cluster, login_role: str) -> str:
    return cluster.dsn().replace("user=postgres", f"user={login_role}")


def _leftovers(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith(("pgtool-verify-", "pgtool-cluster-")))


def test_dir_tenant_database_round_trips_in_the_own_cluster_not_on_the_dsn_server(
    cluster, tenant_db, login_role, tmp_path, scratch
):
    name, owner, _tenant = tenant_db
    dest = tmp_path / "dumps"
    assert backup(cluster, dest, name).returncode == 0
    (stored,) = (dest / globals_dump.GLOBALS_DIR).glob("*.sql")
    assert f'CREATE ROLE "{owner}"' in stored.read_text() or f"CREATE ROLE {owner}" in stored.read_text()
    assert "SCRAM-SHA-256$" not in stored.read_text()  # no password hashes unless asked for
    assert stored.stat().st_mode & 0o077 == 0
    manifest = json.loads(dumps.manifest_path(dumps.list_dumps(dest)[name][-1].path).read_text())
    props = manifest["database_properties"]
    assert props["owner"] == owner and props["comment"] == "tenant data"
    assert any("work_mem=8MB" in s["settings"] for s in props["settings"])
    assert dumps.list_dumps(dest).keys() == {name}  # .globals is not a database

    # --dsn names a role that cannot CREATE DATABASE: a drill on that server could not even start.
    env = {"TMPDIR": str(scratch)}
    args = ["verify", "--dsn", _no_createdb_dsn(cluster, login_role), "--backup-dir", str(dest)]
    proc = run_pgtool(*args, env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"ok      {name}" in proc.stdout and "500 rows" in proc.stdout
    assert OK_PROPERTIES in proc.stdout
    assert "globals restored" in proc.stderr
    assert throwaway_databases(cluster) == []
    assert _leftovers(scratch) == []

    # The same role as --target-dsn: the drill goes there, and fails to create its throwaway database.
    target = ["--target-dsn", _no_createdb_dsn(cluster, login_role)]
    proc = run_pgtool("verify", "--backup-dir", str(dest), *target, env=env)
    assert proc.returncode == 1 and "cannot create throwaway database" in proc.stdout

    # The check compares with what was recorded: a manifest naming another owner fails the drill.
    rewrite_manifest(
        dumps.list_dumps(dest)[name][-1].path,
        lambda m: m["database_properties"].update(owner="postgres"),
    )
    proc = run_pgtool("verify", "--backup-dir", str(dest), env=env)
    assert proc.returncode == 1
    assert "database owner" in proc.stdout and owner in proc.stdout
    assert _leftovers(scratch) == []


def test_target_dsn_drills_on_that_server_without_owners(cluster, tenant_db, tmp_path):
    name, _owner, _tenant = tenant_db
    dest = tmp_path / "dumps"
    assert backup(cluster, dest, name).returncode == 0
    proc = run_pgtool("verify", "--backup-dir", str(dest), "--target-dsn", cluster.dsn(), "--jobs", "1")
    assert proc.returncode == 0, proc.stderr
    assert f"ok      {name}" in proc.stdout and OK_PROPERTIES not in proc.stdout
    assert throwaway_databases(cluster) == []


def test_missing_globals_fall_back_and_damaged_globals_fail(cluster, tenant_db, tmp_path):
    name, _owner, tenant = tenant_db
    dest = tmp_path / "dumps"
    assert backup(cluster, dest, name).returncode == 0
    (stored,) = (dest / globals_dump.GLOBALS_DIR).glob("*.sql")

    # A globals file that lost the tenant role (checksum recomputed): the dump's GRANT cannot restore.
    from pgtool.logical.dump_manifest import checksum_line, sha256_file

    text = "\n".join(line for line in stored.read_text().splitlines() if tenant not in line) + "\n"
    stored.write_text(text)
    Path(str(stored) + ".sha256").write_text(checksum_line(sha256_file(stored), stored.name))
    proc = run_pgtool("verify", "--backup-dir", str(dest))
    assert proc.returncode == 1
    assert tenant in proc.stdout  # the restore (or the database ACL) names the missing role

    # Globals that do not restore at all fail the whole run, naming the statement.
    stored.write_text("CREATE ROLE;\n")
    Path(str(stored) + ".sha256").write_text(checksum_line(sha256_file(stored), stored.name))
    proc = run_pgtool("verify", "--backup-dir", str(dest))
    assert proc.returncode == 1 and "globals do not restore" in proc.stderr

    # No globals stored (dumps of an older pgtool): restored without owners, and said so.
    for path in (dest / globals_dump.GLOBALS_DIR).iterdir():
        path.unlink()
    proc = run_pgtool("verify", "--backup-dir", str(dest))
    assert proc.returncode == 0, proc.stderr
    assert "no globals stored" in proc.stderr and OK_PROPERTIES not in proc.stdout


def test_sigterm_mid_drill_stops_and_removes_the_own_cluster(cluster, make_db, tmp_path, scratch):
    db = make_db(rows=200_000)
    dest = tmp_path / "dumps"
    assert backup(cluster, dest, db.name).returncode == 0
    env = {**os.environ, "TMPDIR": str(scratch)}
    env.pop("PGTOOL_DSN", None)
    proc = subprocess.Popen(
        [*pgtool_argv(), "verify", "--backup-dir", str(dest), "--amcheck"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pid_files = lambda: list(scratch.glob("pgtool-verify-*/cluster/data/postmaster.pid"))  # noqa: E731
    (pid_file,) = retry(pid_files, timeout=60)
    postmaster = int(pid_file.read_text().splitlines()[0])
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert _leftovers(scratch) == []
    with pytest.raises(ProcessLookupError):
        os.kill(postmaster, 0)


def test_with_role_passwords_needs_an_encrypted_repository(cluster, make_db, local_backend, tmp_path):
    db = make_db(rows=1)
    proc = backup(cluster, tmp_path / "dumps", db.name, extra=("--with-role-passwords",))
    assert proc.returncode == 2
    assert "only into an encrypted repository" in proc.stderr
    assert not (tmp_path / "dumps").exists()
    args = ["backup", "--dsn", cluster.dsn(), "--database", db.name, "--with-role-passwords"]
    proc = run_pgtool(*args, env=local_backend.cli_env())
    assert proc.returncode == 2 and "only into an encrypted repository" in proc.stderr


def test_repo_globals_stored_encrypted_with_passwords_and_restored_without_a_dsn(
    cluster, tenant_db, backend, tmp_path
):
    name, owner, tenant = tenant_db
    random_key_file = tmp_path / "repo.key"
    random_key_file.write_bytes(os.urandom(32))
    with cluster.connect() as conn:
        conn.execute(f"ALTER ROLE \"{tenant}\" PASSWORD 'tenant-secret'")
    key_env = {"PGTOOL_REPO_KEY_FILE": str(random_key_file)}
    args = ["backup", "--dsn", cluster.dsn(), "--database", name, "--with-role-passwords"]
    proc = run_pgtool(*args, env=backend.cli_env(**key_env))
    assert proc.returncode == 0, proc.stderr
    assert "ok      globals  dumps/.globals/" in proc.stdout
    repo = backend.open(key_file=str(random_key_file), create=False)
    assert repo.encrypted
    (globals_object,) = [o.name for o in repo.list(globals_dump.REPO_PREFIX)]
    text = repo.read_bytes(globals_object).decode()
    assert owner in text and "SCRAM-SHA-256$" in text  # asked for, and encrypted at rest
    assert repo_catalog.databases(repo) == [name]

    proc = run_pgtool("verify", "--database", name, env=backend.cli_env(**key_env))
    assert proc.returncode == 0, proc.stderr
    assert f"ok      {name}" in proc.stdout and OK_PROPERTIES in proc.stdout
    assert throwaway_databases(cluster) == []


def test_repo_tenant_database_with_target_dsn(cluster, tenant_db, local_backend):
    name, _owner, _tenant = tenant_db
    args = ["backup", "--dsn", cluster.dsn(), "--database", name]
    assert run_pgtool(*args, env=local_backend.cli_env()).returncode == 0
    proc = run_pgtool("verify", "--target-dsn", cluster.dsn(), env=local_backend.cli_env())
    assert proc.returncode == 0, proc.stderr
    assert f"ok      {name}" in proc.stdout and OK_PROPERTIES not in proc.stdout
