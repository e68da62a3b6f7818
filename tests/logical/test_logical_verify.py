"""`pgtool verify` against a real PostgreSQL: good dumps pass, each kind of damage fails by name."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest
from logical_helpers import (
    backup,
    clone_dump,
    newest_dump,
    rewrite_manifest,
    sigterm_while_running,
    throwaway_databases,
    verify,
)

from pgharness import run_pgtool
from pgtool.logical import dumps
from pgtool.logical.dump_restore import read_toc
from pgtool.pg import binaries


def _error(proc: subprocess.CompletedProcess[str]) -> str:
    return json.loads(proc.stderr.strip().splitlines()[-1])["error"]


@pytest.fixture
def dumped(cluster, make_db, tmp_path):
    """Two databases with data (one with an index amcheck can check), backed up into tmp_path."""
    first, second = make_db(rows=300), make_db(rows=50)
    second.execute("CREATE TABLE other AS SELECT g AS n FROM generate_series(1, 77) g")
    proc = backup(cluster, tmp_path, first.name, second.name)
    assert proc.returncode == 0, proc.stderr
    return first, second


@pytest.mark.all_versions
def test_verify_passes_on_good_dumps_and_leaves_nothing_behind(cluster, dumped, tmp_path):
    first, second = dumped
    proc = verify(cluster, tmp_path, extra=("--amcheck",))
    assert proc.returncode == 0, proc.stderr
    assert f"ok      {first.name}" in proc.stdout
    assert f"ok      {second.name}" in proc.stdout
    assert "1 indexes amchecked" in proc.stdout  # the primary key of items
    assert throwaway_databases(cluster) == []


@pytest.mark.all_versions
def test_tables_are_counted_as_they_load_whatever_their_names(cluster, make_db, tmp_path):
    """Parallel pg_restore reports each table's data as committed, by dump id; the TOC maps ids to
    tables even when names hold spaces or quotes, or two schemas share a table name, and every
    table still gets its own exact count."""
    db = make_db(rows=10)
    db.execute('CREATE SCHEMA "odd schema"')
    db.execute('CREATE TABLE "odd schema".items (n int)')
    db.execute('INSERT INTO "odd schema".items SELECT generate_series(1, 7)')
    db.execute('CREATE TABLE public."we""ird name" (n int)')
    db.execute('INSERT INTO public."we""ird name" SELECT generate_series(1, 3)')
    db.execute("CREATE TABLE big (n int PRIMARY KEY)")
    db.execute("INSERT INTO big SELECT generate_series(1, 20000)")
    assert backup(cluster, tmp_path, db.name).returncode == 0

    toc = read_toc(binaries.for_server(cluster.binaries.major), newest_dump(tmp_path, db.name))
    tables = [("odd schema", "items"), ("public", "big"), ("public", "items"), ("public", 'we"ird name')]
    assert sorted(toc.table_ids(tables).values()) == tables

    proc = run_pgtool(
        "--log-level", "debug", "verify", "--dsn", cluster.dsn(), "--backup-dir", str(tmp_path), "-j", "2"
    )
    assert proc.returncode == 0, proc.stderr
    assert f"ok      {db.name}" in proc.stdout and "4 tables  20020 rows" in proc.stdout
    events = [json.loads(line) for line in proc.stderr.splitlines()]
    counted_early = {e["table"] for e in events if e["event"] == "table data restored, counting its rows"}
    assert counted_early == {'"odd schema".items', "public.big", "public.items", 'public."we""ird name"'}
    assert throwaway_databases(cluster) == []


def test_flipped_byte_fails_the_checksum(cluster, dumped, tmp_path):
    first, second = dumped
    dump = newest_dump(tmp_path, first.name)
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0x01
    dump.write_bytes(bytes(data))

    proc = verify(cluster, tmp_path)

    assert proc.returncode == 1
    assert f"{first.name}: checksum mismatch" in _error(proc)
    assert second.name not in _error(proc)  # the good one passed
    assert f"ok      {second.name}" in proc.stdout
    # A failed drill is a finding, like lint's and status's, not an error of pgtool itself.
    last = json.loads(proc.stderr.strip().splitlines()[-1])
    assert (last["event"], last["outcome"], last["exit_code"]) == ("run finished", "findings", 1)


def test_truncated_file_fails(cluster, dumped, tmp_path):
    first, _ = dumped
    dump = newest_dump(tmp_path, first.name)
    dump.write_bytes(dump.read_bytes()[: dump.stat().st_size // 2])
    proc = verify(cluster, tmp_path, first.name)
    assert proc.returncode == 1
    assert f"{first.name}: checksum mismatch" in _error(proc)


def test_truncated_file_with_matching_checksum_fails_in_the_toc_or_restore(cluster, dumped, tmp_path):
    """Damage the checksum cannot see (it was computed after the damage): the restore still catches it."""
    first, _ = dumped
    dump = newest_dump(tmp_path, first.name)
    dump.write_bytes(dump.read_bytes()[:200])
    from pgtool.logical.dump_manifest import checksum_line, sha256_file

    dumps.checksum_path(dump).write_text(checksum_line(sha256_file(dump), dump.name))
    rewrite_manifest(dump, lambda m: m.update(sha256=sha256_file(dump)))
    proc = verify(cluster, tmp_path, first.name)
    assert proc.returncode == 1
    error = _error(proc)
    assert "TOC unreadable" in error or "restore error" in error, error
    assert throwaway_databases(cluster) == []


def test_missing_manifest_fails(cluster, dumped, tmp_path):
    first, _ = dumped
    dumps.manifest_path(newest_dump(tmp_path, first.name)).unlink()
    proc = verify(cluster, tmp_path, first.name)
    assert proc.returncode == 1
    assert f"{first.name}: manifest missing" in _error(proc)


def test_row_count_mismatch_fails_with_both_counts(cluster, dumped, tmp_path):
    first, _ = dumped

    def lie(manifest):
        for table in manifest["tables"]:
            if table["name"] == "items":
                table["rows"] = 299

    rewrite_manifest(newest_dump(tmp_path, first.name), lie)
    proc = verify(cluster, tmp_path, first.name)
    assert proc.returncode == 1
    assert "row count public.items: 300 restored vs 299 in the manifest" in _error(proc)
    assert throwaway_databases(cluster) == []


def test_dump_of_the_wrong_database_fails(cluster, dumped, tmp_path):
    first, second = dumped
    # second's newest "dump" is really first's, with a manifest claiming it is second's
    clone_dump(
        newest_dump(tmp_path, first.name), days_ago=-0.001, database=second.name, into=tmp_path / second.name
    )
    proc = verify(cluster, tmp_path, second.name)
    assert proc.returncode == 1
    assert f"{second.name}: wrong database: the dump's TOC says it is of '{first.name}'" in _error(proc)

    # and a manifest that honestly names the other database
    shutil.rmtree(tmp_path / second.name)
    copy = clone_dump(
        newest_dump(tmp_path, first.name), days_ago=0, database=second.name, into=tmp_path / second.name
    )
    rewrite_manifest(copy, lambda m: m.update(database=first.name))
    proc = verify(cluster, tmp_path, second.name)
    assert proc.returncode == 1
    assert f"wrong database: the manifest says the dump is of '{first.name}'" in _error(proc)


def test_no_dump_for_a_named_database_fails(cluster, dumped, tmp_path):
    proc = verify(cluster, tmp_path, "never_backed_up")
    assert proc.returncode == 1
    assert "never_backed_up: no dump found" in _error(proc)


def test_stale_throwaway_databases_are_dropped(cluster, dumped, tmp_path):
    first, _ = dumped
    with cluster.connect() as conn:
        conn.execute('CREATE DATABASE "pgtool_verify_killed_20200101T000000Z"')
    proc = verify(cluster, tmp_path, first.name, target=True)
    assert proc.returncode == 0, proc.stderr
    assert throwaway_databases(cluster) == []
    assert "pgtool_verify_killed_20200101T000000Z" in proc.stderr  # the cleanup is logged


def test_sigterm_mid_restore_drops_the_throwaway_database(cluster, make_db, tmp_path):
    db = make_db(rows=1_500_000)
    assert backup(cluster, tmp_path, db.name).returncode == 0
    returncode, err = sigterm_while_running(
        cluster,
        ["verify", "--target-dsn", cluster.dsn(), "--backup-dir", str(tmp_path), "--jobs", "1"],
        "pgtool-verify-pg_restore",
    )
    assert returncode == 130, err
    assert json.loads(err.strip().splitlines()[-1])["error"] == "interrupted"
    assert throwaway_databases(cluster) == []


def test_pushgateway_holds_one_then_zero_and_keeps_the_last_success(cluster, dumped, pushgateway, tmp_path):
    first, second = dumped
    args = ("--pushgateway", pushgateway.url)
    job = {"job": "pgtool-verify"}

    assert verify(cluster, tmp_path, extra=args).returncode == 0
    assert pushgateway.samples("pgtool_last_run_success", **job) == [1.0]
    assert pushgateway.samples("pgtool_verify_database_success", database=first.name, **job) == [1.0]
    assert pushgateway.samples("pgtool_verify_database_restore_duration_seconds", database=first.name, **job)
    (last_success,) = pushgateway.samples("pgtool_last_success_timestamp_seconds", **job)

    dumps.checksum_path(newest_dump(tmp_path, first.name)).write_text("0" * 64 + "  x.dump\n")
    assert verify(cluster, tmp_path, extra=args).returncode == 1

    assert pushgateway.samples("pgtool_last_run_success", **job) == [0.0]
    assert pushgateway.samples("pgtool_verify_database_success", database=first.name, **job) == [0.0]
    assert pushgateway.samples("pgtool_verify_database_success", database=second.name, **job) == [1.0]
    assert pushgateway.samples("pgtool_last_success_timestamp_seconds", **job) == [last_success]


def test_verify_base_is_dispatched(pushgateway, tmp_path):
    from pgharness import run_pgtool

    proc = run_pgtool(
        "verify",
        "--base",
        "--base-dir",
        str(tmp_path),
        "--archive-dir",
        str(tmp_path),
        "--pushgateway",
        pushgateway.url,
    )
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 1  # an empty base directory is no backup to drill
    assert json.loads(proc.stderr.strip().splitlines()[-1])["event"] == "run failed"
    assert pushgateway.samples("pgtool_last_run_success", job="pgtool-verify-base") == [0.0]
    assert pushgateway.samples("pgtool_last_run_success", job="pgtool-verify") == []


def test_odd_database_name_backs_up_and_verifies(cluster, tmp_path):
    from psycopg import sql

    from pgtool.pg.conn import connect

    name = 'we/ird-Name "q"'
    with cluster.connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with connect(cluster.dsn(), dbname=name) as conn:
            conn.execute('CREATE TABLE public."Tab" AS SELECT g FROM generate_series(1, 12) g')
        assert backup(cluster, tmp_path, name).returncode == 0
        assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [".globals", 'we%2Fird-Name "q"']
        proc = verify(cluster, tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert "1 tables  12 rows" in proc.stdout
        assert throwaway_databases(cluster) == []
    finally:
        with cluster.connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_usage_errors(cluster, tmp_path):
    from pgharness import run_pgtool

    proc = run_pgtool("verify", "--dsn", cluster.dsn())
    assert proc.returncode == 2 and "--backup-dir" in proc.stderr
    proc = run_pgtool("verify", "--base", "--base-dir", str(tmp_path))
    assert proc.returncode == 2 and "--archive-dir" in proc.stderr
    proc = run_pgtool(
        "verify", "--dsn", cluster.dsn(), "--backup-dir", str(tmp_path), "--base-dir", str(tmp_path)
    )
    assert proc.returncode == 2 and "--base" in proc.stderr
    proc = verify(cluster, tmp_path / "nowhere")
    assert proc.returncode == 1 and "does not exist" in proc.stderr
    proc = verify(cluster, tmp_path)  # exists, but holds no dumps
    assert proc.returncode == 1 and "no dumps found" in proc.stderr


def test_a_counting_session_that_cannot_connect_fails_finish_instead_of_hanging():
    from pgtool.errors import ConnectError
    from pgtool.logical.row_counts import TableCounter

    def refuse() -> Any:
        raise ConnectError("cannot connect: the throwaway database is gone")

    counter = TableCounter(refuse, jobs=2)
    counter.submit(("public", "items"))
    with pytest.raises(ConnectError, match="throwaway database is gone"):
        counter.finish()


def test_the_throwaway_restore_skips_waiting_for_wal_flushes_and_keeps_pgoptions(
    cluster, make_db, tmp_path, monkeypatch
):
    """A CHECK constraint that holds only under the restore's settings: pg_restore evaluates it per row."""
    from pgharness import create_database, drop_database
    from pgtool.logical.dump_restore import RestoreError, restore

    source = make_db(rows=0)
    with source.connect() as conn:
        conn.execute(
            "CREATE FUNCTION sessions_settings_ok() RETURNS boolean LANGUAGE sql AS "
            "$$ SELECT current_setting('synchronous_commit') = 'off'"
            " AND current_setting('work_mem') = '7MB' $$"
        )
        conn.execute("CREATE TABLE checked (id int CHECK (sessions_settings_ok()))")
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET work_mem = '7MB'")
        conn.execute("INSERT INTO checked SELECT generate_series(1, 50)")
    dump = tmp_path / "checked.dump"
    subprocess.run([cluster.binaries.path("pg_dump"), "-Fc", "-f", str(dump), "-d", source.dsn], check=True)
    monkeypatch.setenv("PGOPTIONS", "-c work_mem=7MB")  # the operator's own options survive
    targets = [create_database(cluster, "lgsc") for _ in range(2)]
    try:
        restore(cluster.dsn(), dump, targets[0].name, cluster.binaries, 2)
        assert targets[0].execute("SELECT count(*) FROM checked") == [(50,)]
        monkeypatch.setenv("PGOPTIONS", "")  # control: without work_mem the check fails, so it is live
        with pytest.raises(RestoreError, match="violates check constraint"):
            restore(cluster.dsn(), dump, targets[1].name, cluster.binaries, 2)
    finally:
        for target in targets:
            drop_database(target)


def test_backup_and_verify_with_a_password_keep_it_out_of_argv_and_logs(tmp_path):
    """A server that checks passwords (scram over TCP): the DSN's password reaches pg_dump and
    pg_restore only through a passfile, for a URI and a key=value DSN alike; a wrong one is exit 3."""
    from pgharness import start_cluster

    secret = "s3cret pw:x"
    server = start_cluster(15)
    try:
        with server.connect() as conn:
            conn.execute(f"ALTER ROLE postgres PASSWORD '{secret}'")
            conn.execute("CREATE DATABASE shop")
        with server.connect("shop") as conn:
            conn.execute("CREATE TABLE items AS SELECT g AS id FROM generate_series(1, 1000) g")
        server.set_hba(["local all all trust", "host all all 127.0.0.1/32 scram-sha-256"])
        server.reload()
        uri = f"postgresql://postgres:s3cret%20pw%3Ax@127.0.0.1:{server.port}/postgres"
        keyvalue = f"host=127.0.0.1 port={server.port} user=postgres dbname=postgres password='{secret}'"
        env = {"PGTOOL_LOG_LEVEL": "debug", "PGPASSWORD": "", "PGPASSFILE": "/nonexistent"}

        dumped = run_pgtool("backup", "--dsn", uri, "--dest", str(tmp_path), "-d", "shop", env=env)
        assert dumped.returncode == 0, dumped.stderr
        checked = run_pgtool(
            "verify", "--target-dsn", keyvalue, "--backup-dir", str(tmp_path), "-d", "shop", env=env
        )
        assert checked.returncode == 0, checked.stderr
        assert "1000 rows" in checked.stdout
        for proc in (dumped, checked):
            assert "s3cret" not in proc.stderr + proc.stdout
            # Every binary's argv is logged at debug, redacted: a password on argv would show as ***.
            argvs = [e["argv"] for e in map(json.loads, proc.stderr.splitlines()) if e["event"] == "running"]
            assert any("pg_dump" in a or "pg_restore" in a for a in argvs)
            assert not [a for a in argvs if "***" in a or "password=" in a]

        wrong = run_pgtool(
            "backup", "--dsn", uri.replace("s3cret", "wrong"), "--dest", str(tmp_path), "-d", "shop", env=env
        )
        assert wrong.returncode == 3, wrong.stderr
        assert "password authentication failed" in wrong.stderr and "check the password" in wrong.stderr
        assert "wrong" not in json.loads(wrong.stderr.strip().splitlines()[-1])["error"]
    finally:
        server.cleanup()
