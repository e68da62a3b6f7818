"""verify against hostile input: a stale throwaway name in foreign bytes, a manifest with a bogus encoding."""

from __future__ import annotations

import uuid

import psycopg
from logical_helpers import backup, forget_statement_texts, newest_dump, rewrite_manifest, verify
from psycopg import sql

from pgtool.logical import dumps


def test_stale_throwaway_with_undecodable_name_is_dropped(cluster, make_db, tmp_path):
    """A role with CREATEDB can name a database with bytes that are not UTF-8 (from a SQL_ASCII
    database): verify's cleanup of `pgtool_verify_*` must not crash on quoting its name."""
    db = make_db(rows=10)
    assert backup(cluster, tmp_path, db.name).returncode == 0
    ascii_db = f"lg_sa_{uuid.uuid4().hex[:8]}"
    stale = b'"pgtool_verify_killed_\xe9"'
    with cluster.connect() as conn:
        conn.execute(
            sql.SQL(
                "CREATE DATABASE {} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
            ).format(sql.Identifier(ascii_db))
        )
    try:
        with psycopg.connect(cluster.dsn(ascii_db), autocommit=True) as conn:
            conn.execute(b"CREATE DATABASE " + stale)
        proc = verify(cluster, tmp_path, db.name, target=True)
        # libpq cannot quote those bytes on a UTF-8 session: the drop fails by name, logged, and
        # the drill goes on (before, quoting raised UnicodeEncodeError and ended the run).
        assert proc.returncode == 0, proc.stderr
        assert "could not drop stale throwaway database" in proc.stderr
        assert "dump verified" in proc.stderr
    finally:
        with psycopg.connect(cluster.dsn(ascii_db), autocommit=True) as conn:
            conn.execute(b"DROP DATABASE IF EXISTS " + stale + b" WITH (FORCE)")
        with cluster.connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(ascii_db)))
        forget_statement_texts(cluster)


def test_a_manifest_encoding_that_is_not_text_fails_its_database_only(cluster, make_db, tmp_path):
    """A damaged or foreign manifest ("database_encoding": 6) fails that database by name; the run
    goes on with the others instead of ending in an unexpected error."""
    bad, good = make_db(rows=5), make_db(rows=7)
    assert backup(cluster, tmp_path, bad.name, good.name).returncode == 0
    rewrite_manifest(newest_dump(tmp_path, bad.name), lambda m: m.update(database_encoding=6))
    proc = verify(cluster, tmp_path, bad.name, good.name)
    assert proc.returncode == 1, proc.stderr
    assert "unexpected error" not in proc.stderr
    assert "database_encoding" in proc.stderr
    assert f"ok      {good.name}" in proc.stdout or "dump verified" in proc.stderr
    assert dumps.is_verified(dumps.list_dumps(tmp_path)[good.name][-1])
