"""psql as a session (`pgtool.pg.psql`): rows, errors, quoting and cancellation on a real server."""

from __future__ import annotations

import threading
import time

import pytest

from pgtool.errors import ConnectError, OperationError
from pgtool.pg import psql


def test_rows_survive_commas_quotes_newlines_and_nulls(cluster):
    with psql.Session(cluster.binaries, cluster.dsn()) as session:
        rows = session.rows("SELECT 'a,b', 'say \"hi\"', E'two\\nlines', NULL, 42;")
        assert rows == [["a,b", 'say "hi"', "two\nlines", "", "42"]]
        # the session keeps its state between calls: a transaction, a setting
        session.rows("BEGIN; SET LOCAL work_mem = '7MB';")
        assert session.rows("SHOW work_mem;") == [["7MB"]]


@pytest.mark.all_versions
def test_identifier_quotes_any_name(cluster):
    name = 'odd "name", with; spaces'
    table = psql.identifier(name)
    with psql.Session(cluster.binaries, cluster.dsn()) as session:
        session.rows(f"CREATE TEMP TABLE {table} (id int); INSERT INTO {table} VALUES (1), (2);")
        assert session.rows(f"SELECT count(*) FROM {table};") == [["2"]]
        assert session.rows("SELECT relname FROM pg_class WHERE relname LIKE 'odd %';") == [[name]]


def test_an_sql_error_is_one_line_with_the_servers_message(cluster):
    with psql.Session(cluster.binaries, cluster.dsn()) as session:
        with pytest.raises(OperationError) as err:
            session.rows("SELECT 1/0;")
        assert err.value.message == "division by zero"
        assert not session.usable


def test_a_connection_failure_is_connect_error_with_a_hint_and_no_password(cluster):
    dsn = cluster.dsn("no_such_database_ps") + " password=s3cret-pw"
    with pytest.raises(ConnectError) as err:
        psql.query(cluster.binaries, dsn, "SELECT 1;")
    text = err.value.one_line()
    assert "no_such_database_ps" in text and "does not exist" in text
    assert "check the database name" in text
    assert "s3cret-pw" not in text


def test_interrupt_cancels_the_running_statement_and_spares_idle_sessions(cluster):
    with (
        psql.Session(cluster.binaries, cluster.dsn()) as busy,
        psql.Session(cluster.binaries, cluster.dsn()) as idle,
    ):
        outcome: list[BaseException] = []

        def sleep() -> None:
            try:
                busy.rows("SELECT pg_sleep(60);")
            except BaseException as exc:
                outcome.append(exc)

        sleeper = threading.Thread(target=sleep)
        sleeper.start()
        while not cluster_has_sleeper(cluster):
            time.sleep(0.05)
        psql.interrupt()
        sleeper.join(timeout=30)
        assert not sleeper.is_alive()
        assert isinstance(outcome[0], OperationError)
        assert "canceling statement due to user request" in outcome[0].message
        assert idle.rows("SELECT 'still here';") == [["still here"]]


def cluster_has_sleeper(cluster) -> bool:
    with cluster.connect() as conn:
        return bool(
            conn.execute("SELECT 1 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60);'").fetchall()
        )
