"""`pgtool top` when pg_stat_statements holds text this database's encoding cannot carry.

A SQL_ASCII database may run statements with any 8-bit bytes. pg_stat_statements keeps their text in
that database's encoding, and reading texts from a UTF8 database then fails the whole read ("invalid
byte sequence for encoding UTF8"). top must still show the statistics, and say why the text is missing.
"""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from psycopg import sql

from pgharness import run_pgtool
from pgtool.top.queries import statements_query


@pytest.mark.all_versions
def test_top_reads_statistics_when_another_database_holds_8_bit_text(cluster, database):
    name = f"top_sa_{uuid.uuid4().hex[:8]}"
    database.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    with cluster.connect() as conn:
        conn.execute(
            sql.SQL(
                "CREATE DATABASE {} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
            ).format(sql.Identifier(name))
        )
    try:
        with psycopg.connect(cluster.dsn(name), autocommit=True) as conn:
            conn.execute(b"SELECT 'caf\xe9' AS \"caf\xe9\"")
        for _ in range(3):
            database.execute("SELECT pg_sleep(0.05)")
        # The control: reading the texts really fails in this database, so the fallback is exercised.
        with pytest.raises(psycopg.errors.CharacterNotInRepertoire):
            database.execute("SELECT query FROM public.pg_stat_statements")

        proc = run_pgtool(
            "top", "--dsn", database.dsn, "--database", database.name, "--by", "calls", "--format", "json"
        )
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        sleeps = [s for s in doc["statements"] if s["database"] == database.name and s["calls"] == 3]
        assert sleeps, doc["statements"]
        assert all("query text not shown" in s["query"] for s in doc["statements"])
        assert "query texts not shown" in proc.stderr
        # top's own statement is still left out, told apart by its query id (EXPLAIN VERBOSE shows it).
        with database.connect() as conn:
            own = statements_query(conn.info.server_version, "mean", 20, database.name, showtext=False)
            plan = conn.execute(sql.SQL("EXPLAIN (VERBOSE) {}").format(own)).fetchall()
        own_id = next(int(r[0].split(":")[1]) for r in plan if r[0].startswith("Query Identifier:"))
        for _ in range(2):
            again = run_pgtool(
                "top",
                "--dsn",
                database.dsn,
                "--database",
                database.name,
                "--by",
                "mean",
                "--limit",
                "20",
                "--format",
                "json",
            )
            assert again.returncode == 0, again.stderr
        assert own_id not in {s["queryid"] for s in json.loads(again.stdout)["statements"]}
    finally:
        with cluster.connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        database.execute("SELECT public.pg_stat_statements_reset()")
