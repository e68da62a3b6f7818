"""Backup and verify never lose a database, a count or the last good dump (issue 14's findings 4, 5,
10-13 and the low ones), each on a real cluster."""

from __future__ import annotations

import json
import subprocess
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from logical_helpers import (
    backup,
    clone_dump,
    forget_statement_texts,
    newest_dump,
    rewrite_manifest,
    throwaway_databases,
    verify,
)
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pgharness import pgtool_argv, retry, run_pgtool, start_cluster
from pgtool.logical import dumps


def _error(proc: subprocess.CompletedProcess[str]) -> str:
    return json.loads(proc.stderr.strip().splitlines()[-1])["error"]


def _manifest_counts(backup_dir, database):
    info = dumps.list_dumps(backup_dir)[database][-1]
    return {(t["schema"], t["name"]): t["rows"] for t in info.manifest["tables"]}


def test_carriage_returns_and_newlines_in_names_lose_nothing(pg_major, tmp_path):
    """`x\\ry` beside `x\\ny` are two databases, `t\\rx`, `t\\nx` and `t x` three tables, each
    counted exactly; a database name with a newline verifies (its TOC shows a space)."""
    server = start_cluster(pg_major)
    try:
        with server.connect() as conn:
            for name in ("x\ry", "x\ny"):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        for db, tables in (("x\ry", {"t\rx": 3, "t\nx": 5, "t x": 7}), ("x\ny", {"only": 2})):
            with psycopg.connect(make_conninfo(server.dsn(), dbname=db), autocommit=True) as conn:
                for table, rows in tables.items():
                    conn.execute(sql.SQL("CREATE TABLE public.{} (n int)").format(sql.Identifier(table)))
                    insert = sql.SQL("INSERT INTO public.{} SELECT generate_series(1, %s)")
                    conn.execute(insert.format(sql.Identifier(table)), [rows])

        proc = backup(server, tmp_path)  # every database: the names come from the catalog
        assert proc.returncode == 0, proc.stderr
        assert set(dumps.list_dumps(tmp_path)) == {"postgres", "x\ry", "x\ny"}
        assert _manifest_counts(tmp_path, "x\ry") == {
            ("public", "t\rx"): 3,
            ("public", "t\nx"): 5,
            ("public", "t x"): 7,
        }
        assert _manifest_counts(tmp_path, "x\ny") == {("public", "only"): 2}

        proc = run_pgtool(
            "verify", "--dsn", server.dsn(), "--backup-dir", str(tmp_path), "-d", "x\ry", "-d", "x\ny"
        )
        assert proc.returncode == 0, proc.stderr
        assert "3 tables  15 rows" in proc.stdout and "1 tables  2 rows" in proc.stdout
        # The console names them escaped: a CR or LF in a name cannot forge an output line.
        assert "ok      x\\ry  " in proc.stdout and "ok      x\\ny  " in proc.stdout
        assert "\r" not in proc.stdout and len(proc.stdout.splitlines()) == 2
        assert throwaway_databases(server) == []
    finally:
        server.cleanup()


@pytest.mark.all_versions
def test_a_sql_ascii_database_with_8_bit_names_backs_up_and_verifies(cluster, tmp_path):
    """Its names are bytes no encoding validates: they reach the manifest and the restored copy exactly."""
    name = f"lg_sa_{uuid.uuid4().hex[:8]}"
    with cluster.connect() as conn:
        conn.execute(
            sql.SQL(
                "CREATE DATABASE {} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
            ).format(sql.Identifier(name))
        )
    try:
        with psycopg.connect(cluster.dsn(name), autocommit=True) as conn:
            conn.execute(b'CREATE SCHEMA "sch\xe9ma"')
            conn.execute(b'CREATE TABLE "sch\xe9ma"."caf\xe9" (n int PRIMARY KEY)')
            conn.execute(b'INSERT INTO "sch\xe9ma"."caf\xe9" SELECT generate_series(1, 4)')
            conn.execute(b'CREATE TABLE public."caf\xe9\r" (n int)')
            conn.execute(b'INSERT INTO public."caf\xe9\r" VALUES (1)')
        proc = backup(cluster, tmp_path, name)
        assert proc.returncode == 0, proc.stderr
        assert _manifest_counts(tmp_path, name) == {
            ("sch\udce9ma", "caf\udce9"): 4,
            ("public", "caf\udce9\r"): 1,
        }
        proc = verify(cluster, tmp_path, name, extra=("--amcheck",))
        assert proc.returncode == 0, proc.stderr
        assert "2 tables  5 rows" in proc.stdout and "1 indexes amchecked" in proc.stdout
        assert throwaway_databases(cluster) == []

        # A database whose own name is not UTF-8 (created from this one) cannot be reached through
        # psycopg: it fails by name, and the run goes on with the others.
        with psycopg.connect(cluster.dsn(name), autocommit=True) as conn:
            conn.execute(b'CREATE DATABASE "' + name.encode() + b'\xe9"')
        proc = backup(cluster, tmp_path, name + "\udce9", name)
        assert proc.returncode == 1
        assert "not valid UTF-8" in _error(proc) and f"ok      {name}  " in proc.stdout
    finally:
        with psycopg.connect(cluster.dsn(name), autocommit=True) as conn:
            conn.execute(b'DROP DATABASE IF EXISTS "' + name.encode() + b'\xe9" WITH (FORCE)')
        with cluster.connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        forget_statement_texts(cluster)


def test_retention_keeps_the_last_verified_dump_after_a_corrupt_one_and_a_failed_backup(
    cluster, login_role, make_db, tmp_path
):
    db = make_db(rows=40)
    assert backup(cluster, tmp_path, db.name).returncode == 0
    first = newest_dump(tmp_path, db.name)
    good = clone_dump(first, days_ago=30)  # the good dump, a month old
    for path in (first, dumps.checksum_path(first), dumps.manifest_path(first)):
        path.unlink()
    proc = verify(cluster, tmp_path, db.name)
    assert proc.returncode == 0, proc.stderr
    assert dumps.verified_path(good).exists()

    corrupt = clone_dump(good, days_ago=20)  # a newer dump, damaged after its checksum was taken
    data = bytearray(corrupt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    assert verify(cluster, tmp_path, db.name).returncode == 1
    assert not dumps.verified_path(corrupt).exists()

    db.execute("CREATE TABLE secret (x int)")  # the next backup fails: the role may not read it
    db.execute(f'GRANT SELECT ON items TO "{login_role}"')
    proc = backup(cluster, tmp_path, db.name, dsn=cluster.dsn(user=login_role))
    assert proc.returncode == 1, proc.stderr

    kept = [info.path for info in dumps.list_dumps(tmp_path)[db.name]]
    assert kept == [good, corrupt]  # the corrupt one is the newest, the good one the last proven


def test_two_verifies_on_different_maintenance_databases_keep_their_throwaways(cluster, make_db, tmp_path):
    big, small, maintenance = make_db(rows=1_500_000), make_db(rows=10), make_db(rows=0)
    assert backup(cluster, tmp_path, big.name, small.name).returncode == 0
    first = subprocess.Popen(
        [
            *pgtool_argv(),
            "verify",
            "--target-dsn",
            cluster.dsn(),
            "--backup-dir",
            str(tmp_path),
            "-d",
            big.name,
            "-j",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def restoring() -> bool:
            assert first.poll() is None, "the first verify ended too soon"
            return len(throwaway_databases(cluster)) == 1

        retry(restoring, timeout=120, interval=0.05)
        second = run_pgtool(
            "verify",
            "--target-dsn",
            cluster.dsn(maintenance.name),
            "--backup-dir",
            str(tmp_path),
            "-d",
            small.name,
        )
        _out, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert second.returncode == 0, second.stderr
    assert first.returncode == 0, err
    assert "dropping throwaway database" not in second.stderr
    assert throwaway_databases(cluster) == []


def test_amcheck_checks_the_leaf_indexes_of_a_partitioned_table(cluster, make_db, tmp_path):
    db = make_db(rows=10)
    db.execute("CREATE TABLE events (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)")
    db.execute(
        "CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')"
    )
    db.execute(
        "CREATE TABLE events_2027 PARTITION OF events FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')"
    )
    db.execute("CREATE INDEX ON events (at)")
    db.execute("INSERT INTO events SELECT g, '2026-01-01'::date + g FROM generate_series(1, 600) g")
    assert backup(cluster, tmp_path, db.name).returncode == 0
    proc = verify(cluster, tmp_path, db.name, extra=("--amcheck",))
    assert proc.returncode == 0, proc.stderr
    assert "5 indexes amchecked" in proc.stdout  # items' key, and 2 per partition


def test_forced_row_level_security_counts_every_row_for_a_non_superuser_verify_role(
    cluster, login_role, make_db, tmp_path
):
    db = make_db(rows=10)
    db.execute("ALTER TABLE items ENABLE ROW LEVEL SECURITY")
    db.execute("ALTER TABLE items FORCE ROW LEVEL SECURITY")
    db.execute("CREATE POLICY nobody ON items USING (false)")
    assert backup(cluster, tmp_path, db.name).returncode == 0
    with cluster.connect() as conn:
        conn.execute(sql.SQL("ALTER ROLE {} CREATEDB").format(sql.Identifier(login_role)))
    proc = run_pgtool(
        "verify", "--target-dsn", cluster.dsn(user=login_role), "--backup-dir", str(tmp_path), "-d", db.name
    )
    assert proc.returncode == 0, proc.stderr
    assert "1 tables  10 rows" in proc.stdout

    # Backing up as a role the policy applies to fails, naming row-level security, never a count of 0.
    db.execute(f'ALTER TABLE items OWNER TO "{login_role}"')
    proc = backup(cluster, tmp_path, db.name, dsn=cluster.dsn(user=login_role))
    assert proc.returncode == 1
    assert "row-level security" in _error(proc)


def test_a_malformed_row_count_fails_only_its_own_database(cluster, make_db, tmp_path):
    first, second = make_db(rows=12), make_db(rows=5)
    assert backup(cluster, tmp_path, first.name, second.name).returncode == 0

    def stringly(manifest):
        manifest["tables"][0]["rows"] = "twelve"

    rewrite_manifest(newest_dump(tmp_path, first.name), stringly)
    proc = verify(cluster, tmp_path)
    assert proc.returncode == 1
    assert f"{first.name}: manifest" in _error(proc) and "no valid table list" in _error(proc)
    assert f"ok      {second.name}" in proc.stdout


def test_absurd_retention_is_refused_before_any_dump(cluster, make_db, tmp_path):
    db = make_db(rows=1)
    proc = backup(cluster, tmp_path, db.name, extra=("--retention-days", "10000000000"))
    assert proc.returncode == 2 and "--retention-days" in _error(proc)
    assert not (tmp_path / db.name).exists()


def test_verify_jobs_are_capped(cluster, make_db, tmp_path):
    db = make_db(rows=1)
    assert backup(cluster, tmp_path, db.name).returncode == 0
    proc = verify(cluster, tmp_path, db.name, extra=("--jobs", "65"))
    assert proc.returncode == 2 and "--jobs" in proc.stderr
    assert throwaway_databases(cluster) == []


def test_a_manifest_that_cannot_be_written_leaves_no_checksum_behind(cluster, make_db, tmp_path):
    """The manifest's place is taken (as a full disk would fail its write): nothing is left but that."""
    db = make_db(rows=3)
    db_dir = dumps.database_dir(tmp_path, db.name)
    now = datetime.now(UTC)
    for second in range(-2, 120):
        stamp = dumps.format_stamp(now + timedelta(seconds=second))
        blocker = db_dir / (
            dumps.dump_name(db.name, stamp)[: -len(dumps.DUMP_SUFFIX)] + dumps.MANIFEST_SUFFIX
        )
        (blocker / "x").mkdir(parents=True)
    proc = backup(cluster, tmp_path, db.name)
    assert proc.returncode == 1
    assert "cannot write" in _error(proc)
    assert sorted(p.suffix for p in db_dir.iterdir()) == [".json"] * 122  # only the blockers


def test_a_dump_stamped_in_the_future_does_not_shadow_the_newest(cluster, make_db, tmp_path):
    db = make_db(rows=8)
    assert backup(cluster, tmp_path, db.name).returncode == 0
    real = newest_dump(tmp_path, db.name)
    future = clone_dump(real, days_ago=-30)
    rewrite_manifest(future, lambda m: m["tables"][0].update(rows=999))
    assert newest_dump(tmp_path, db.name) == real
    proc = verify(cluster, tmp_path, db.name)
    assert proc.returncode == 0, proc.stderr
    assert "stamped in the future" in proc.stderr and future.name in proc.stderr
    assert dumps.verified_path(real).exists()
