"""pgtool partitions on real PostgreSQL: ahead/since, idempotence, DEFAULT rows moved, UTC bounds,
concurrency, retention."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime

import pytest
from schema_testlib import scalar

from pgharness import retry, run_pgtool
from pgtool import sample
from pgtool.errors import UsageError
from pgtool.schema.locks import PARTITIONS_LOCK_CLASS
from pgtool.schema.partitions import add_months, current_month, maintain_partitions

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
EVENTS_DDL = (
    "CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY, at timestamptz NOT NULL, v int NOT NULL, "
    "PRIMARY KEY (id, at)) PARTITION BY RANGE (at)"
)
# A real observer of DDL: an event trigger records every DDL command the tool runs.
DDL_LOG = """
CREATE TABLE ddl_log (tag text, at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION log_ddl() RETURNS event_trigger LANGUAGE plpgsql AS
$$ BEGIN INSERT INTO public.ddl_log (tag) VALUES (tg_tag); END $$;
CREATE EVENT TRIGGER log_ddl ON ddl_command_start EXECUTE FUNCTION log_ddl();
"""


def bounds(db, table="events"):
    """{partition: (from, to)} read in a UTC session."""
    with db.connect() as conn:
        conn.execute("SET TimeZone = 'UTC'")
        rows = conn.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass ORDER BY 1",
            (table,),
        ).fetchall()
    return dict(rows)


@pytest.mark.all_versions
def test_ahead_and_since_then_idempotent(database):
    database.execute(EVENTS_DDL)
    with database.connect() as conn:
        conn.execute(DDL_LOG)
        first = maintain_partitions(conn, "public.events", ahead=3, since=date(2026, 1, 1), now=NOW)
    expected = [f"events_p2026_{m:02d}" for m in range(1, 7)]
    assert first.created == expected
    assert first.default_created == "events_default"
    found = bounds(database)
    assert found["events_default"] == "DEFAULT"
    assert (
        found["events_p2026_01"] == "FOR VALUES FROM ('2026-01-01 00:00:00+00') TO ('2026-02-01 00:00:00+00')"
    )
    assert (
        found["events_p2026_06"] == "FOR VALUES FROM ('2026-06-01 00:00:00+00') TO ('2026-07-01 00:00:00+00')"
    )
    assert len(found) == 7
    # the CHECK that made ATTACH validation-free is gone again; the PK came along with LIKE ... INCLUDING ALL
    assert scalar(database, "SELECT count(*) FROM pg_constraint WHERE conname LIKE 'events_p%%_bound'") == 0
    assert scalar(database, "SELECT count(*) FROM pg_indexes WHERE tablename = 'events_p2026_03'") == 1
    ddl_before = scalar(database, "SELECT count(*) FROM ddl_log")
    assert ddl_before > 0
    with database.connect() as conn:
        second = maintain_partitions(conn, "public.events", ahead=3, since=date(2026, 1, 1), now=NOW)
    assert second.created == [] and not second.changed and second.ddl == []
    assert second.in_place == expected
    assert scalar(database, "SELECT count(*) FROM ddl_log") == ddl_before  # no DDL at all
    # inserts route to the new partitions; the identity default still works through the parent
    database.execute("INSERT INTO events (at, v) VALUES ('2026-04-30 23:59:59+00', 1), ('2027-01-01', 2)")
    where = database.execute("SELECT tableoid::regclass::text FROM events ORDER BY at")
    assert where == [("events_p2026_04",), ("events_default",)]


def test_cli_dry_run_prints_ddl_and_changes_nothing(database, pushgateway):
    database.execute(EVENTS_DDL)
    result = run_pgtool(
        "partitions", "--dsn", database.dsn, "--table", "public.events", "--ahead", "1", "--dry-run"
    )
    assert result.returncode == 0, result.stderr
    month = current_month()
    name = f"events_p{month:%Y_%m}"
    assert (
        f'CREATE TABLE "public"."{name}" (LIKE "public"."events" INCLUDING ALL EXCLUDING IDENTITY);'
        in result.stdout
    )
    assert f'ATTACH PARTITION "public"."{name}" FOR VALUES FROM' in result.stdout
    assert 'PARTITION OF "public"."events" DEFAULT' in result.stdout
    assert bounds(database) == {}
    real = run_pgtool(
        "partitions",
        "--dsn",
        database.dsn,
        "--table",
        "public.events",
        "--ahead",
        "1",
        "--pushgateway",
        pushgateway.url,
    )
    assert real.returncode == 0, real.stderr
    assert pushgateway.samples("pgtool_partitions_created", table="public.events") == [2.0]
    assert f"created  {name}" in real.stdout
    nxt = f"events_p{add_months(month, 1):%Y_%m}"
    assert set(bounds(database)) == {"events_default", name, nxt}
    again = run_pgtool("partitions", "--dsn", database.dsn, "--table", "public.events", "--ahead", "1")
    assert "0 created, 2 already in place" in again.stdout


@pytest.mark.all_versions
def test_rows_in_default_move_with_counts_and_sums_intact(database):
    until = datetime(2026, 3, 10, tzinfo=UTC)
    with database.connect() as conn:
        sample.apply_schema(conn)
        sample.seed(conn, scale=0.05, seed=3, until=until, days=100, partitions=False, refresh=False)
    per_month_sql = (
        "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY_MM'), count(*), sum(total), count(DISTINCT id) "
        "FROM {} GROUP BY 1 ORDER BY 1"
    )
    before = database.execute(per_month_sql.format("orders"))
    assert scalar(database, "SELECT count(*) FROM orders_default") == 500  # everything waits in DEFAULT
    with database.connect() as conn:
        # tiny batches: the move runs in several page-range batches
        result = maintain_partitions(
            conn, "public.orders", ahead=0, since=date(2025, 12, 1), now=until, batch_pages=1
        )
    assert result.created == ["orders_p2025_12", "orders_p2026_01", "orders_p2026_02", "orders_p2026_03"]
    assert database.execute(per_month_sql.format("orders")) == before  # nothing lost, nothing duplicated
    for month, count, total, _distinct in before:
        part = f"orders_p{month}"
        if part in result.created:
            assert result.moved_rows[part] == count
            got = database.execute(f"SELECT count(*), sum(total) FROM {part}")[0]
            assert got == (count, total)
    left = database.execute(per_month_sql.format("orders_default"))
    assert [r[0] for r in left] == ["2025_11"]  # only the month not asked for stays in DEFAULT


def test_month_bounds_are_utc_in_a_far_away_session_time_zone(database):
    database.execute(EVENTS_DDL)
    database.execute("CREATE TABLE events_default PARTITION OF events DEFAULT")
    # 23:30 UTC on Feb 28 is already March 1 in Kiritimati (UTC+14)
    database.execute(
        "INSERT INTO events (at, v) VALUES ('2026-02-28 23:30:00+00', 1), ('2026-03-01 00:30:00+00', 2)"
    )
    database.execute(f"ALTER DATABASE \"{database.name}\" SET TimeZone = 'Pacific/Kiritimati'")
    dsn = database.dsn + " options='-c TimeZone=Pacific/Kiritimati'"
    month = current_month()
    result = run_pgtool(
        "partitions", "--dsn", dsn, "--table", "public.events", "--since", "2026-02", "--ahead", "0"
    )
    assert result.returncode == 0, result.stderr
    found = bounds(database)
    assert (
        found["events_p2026_02"] == "FOR VALUES FROM ('2026-02-01 00:00:00+00') TO ('2026-03-01 00:00:00+00')"
    )
    assert found[f"events_p{month:%Y_%m}"].endswith(f"TO ('{add_months(month, 1).isoformat()} 00:00:00+00')")
    placed = dict(database.execute("SELECT v, tableoid::regclass::text FROM events"))
    assert placed == {1: "events_p2026_02", 2: "events_p2026_03"}


def test_concurrent_runs_serialise_and_create_each_partition_once(database):
    database.execute(EVENTS_DDL)
    database.execute("CREATE TABLE events_default PARTITION OF events DEFAULT")
    results, errors = [], []

    def run():
        try:
            with database.connect() as conn:
                results.append(maintain_partitions(conn, "public.events", ahead=2, now=NOW))
        except Exception as exc:
            errors.append(exc)

    holder = database.connect(autocommit=False)
    try:
        oid = holder.execute("SELECT 'public.events'::regclass::oid").fetchone()[0]
        holder.execute(
            "SELECT pg_advisory_xact_lock(%s, (%s::oid::bigint - 2147483648)::int4)",
            (PARTITIONS_LOCK_CLASS, oid),
        )
        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()

        def both_waiting():
            n = database.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = %s",
                (PARTITIONS_LOCK_CLASS,),
            )[0][0]
            return n == 2

        retry(both_waiting, timeout=60)
        holder.commit()
    finally:
        holder.close()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    created = sorted(results[0].created + results[1].created)
    assert created == ["events_p2026_03", "events_p2026_04", "events_p2026_05"]
    assert len(bounds(database)) == 4


@pytest.mark.all_versions
def test_retention_detaches_or_drops_old_partitions_never_default(database):
    database.execute(EVENTS_DDL)
    with database.connect() as conn:
        maintain_partitions(conn, "public.events", ahead=0, since=date(2025, 9, 1), now=NOW)
        with pytest.raises(UsageError, match="older than the retention window"):
            maintain_partitions(conn, "public.events", since=date(2025, 9, 1), retention_months=3, now=NOW)
        detached = maintain_partitions(conn, "public.events", ahead=0, retention_months=4, now=NOW)
    # cutoff 2025-11-01: September and October go, November onwards stay
    assert detached.detached == ["events_p2025_09", "events_p2025_10"]
    assert set(bounds(database)) == {
        "events_default",
        *(f"events_p2025_{m}" for m in (11, 12)),
        *(f"events_p2026_0{m}" for m in (1, 2, 3)),
    }
    assert scalar(database, "SELECT to_regclass('events_p2025_09') IS NOT NULL")  # detached, kept
    result = run_pgtool(
        "partitions",
        "--dsn",
        database.dsn,
        "--table",
        "public.events",
        "--ahead",
        "0",
        "--retention-months",
        "1",
        "--drop",
    )
    assert result.returncode == 0, result.stderr
    month = current_month()  # the real clock: every partition of 2025/early 2026 is now past retention
    assert set(bounds(database)) == {"events_default", f"events_p{month:%Y_%m}"}
    assert "dropped  events_p2025_11" in result.stdout
    assert scalar(database, "SELECT to_regclass('events_p2025_11') IS NULL")


def test_bad_table_is_a_usage_error(database):
    database.execute("CREATE TABLE plain (id int)")
    result = run_pgtool("partitions", "--dsn", database.dsn, "--table", "public.plain")
    assert result.returncode == 2
    assert "is not a partitioned table" in result.stderr
    result = run_pgtool("partitions", "--dsn", database.dsn, "--table", "public.events", "--since", "2026-13")
    assert result.returncode == 2 and "invalid month" in result.stderr


def test_lock_timeout_fails_cleanly_and_leaves_nothing_behind(database):
    database.execute(EVENTS_DDL)
    database.execute("CREATE TABLE events_default PARTITION OF events DEFAULT")
    blocker = database.connect(autocommit=False)
    try:
        blocker.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        result = run_pgtool(
            "partitions", "--dsn", database.dsn, "--table", "public.events", "--lock-timeout", "200ms"
        )
    finally:
        blocker.rollback()
        blocker.close()
    assert result.returncode == 1
    assert "lock_timeout" in result.stderr
    assert set(bounds(database)) == {"events_default"}
    assert scalar(database, "SELECT count(*) FROM pg_class WHERE relname ~ '^events_p[0-9]'") == 0
    bad = run_pgtool(
        "partitions", "--dsn", database.dsn, "--table", "public.events", "--lock-timeout", "soon"
    )
    assert bad.returncode == 2 and "invalid lock timeout" in bad.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ahead", "99999999999"], "--ahead must be between 0 and 120 months"),
        (["--ahead", "-1"], "--ahead must be between 0 and 120 months"),
        (["--retention-months", "99999999999"], "--retention-months must be between 1 and 1200"),
        (["--since", "0000-01"], "invalid month '0000-01'"),
        (["--since", "1900-01"], "asks for"),
    ],
)
def test_absurd_window_is_one_line_exit_2_before_connecting(database, args, message):
    # Before: --ahead 99999999999 connected, then died in date arithmetic (OverflowError/ValueError).
    # Exit 2 even with a server that does not exist: nothing is attempted.
    for dsn in (database.dsn, "host=/nonexistent-pgtool-socket-dir dbname=x"):
        result = run_pgtool("partitions", "--dsn", dsn, "--table", "public.events", *args)
        assert result.returncode == 2, result.stderr
        lines = [line for line in result.stderr.splitlines() if '"run failed"' in line]
        assert len(lines) == 1 and message in lines[0], result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.all_versions
def test_moving_rows_keeps_rows_that_reference_them(database):
    # Moving a row out of DEFAULT deletes it there before the new partition is attached: ON DELETE CASCADE
    # used to delete every referencing row (and NO ACTION to fail). A superuser moves in replica mode.
    database.execute(EVENTS_DDL)
    database.execute("CREATE TABLE events_default PARTITION OF events DEFAULT")
    database.execute(
        "CREATE TABLE notes (id bigint, at timestamptz, "
        "FOREIGN KEY (id, at) REFERENCES events ON DELETE CASCADE)"
    )
    database.execute(
        "CREATE TABLE audits (id bigint, at timestamptz, FOREIGN KEY (id, at) REFERENCES events)"
    )
    database.execute(
        "INSERT INTO events (at, v) "
        "SELECT '2026-03-02+00'::timestamptz + g * interval '1 h', g FROM generate_series(1, 5) g"
    )
    database.execute("INSERT INTO notes SELECT id, at FROM events")
    database.execute("INSERT INTO audits SELECT id, at FROM events")
    with database.connect() as conn:
        result = maintain_partitions(conn, "public.events", ahead=0, since=date(2026, 3, 1), now=NOW)
    assert result.moved_rows == {"events_p2026_03": 5}
    assert scalar(database, "SELECT count(*) FROM notes") == 5
    assert scalar(database, "SELECT count(*) FROM audits") == 5
    assert scalar(database, "SELECT count(*) FROM ONLY events_p2026_03") == 5
    # A non-superuser owner cannot switch referential triggers off: refused, nothing changed.
    database.execute("INSERT INTO events (at, v) VALUES ('2026-04-02+00', 6)")
    database.execute("INSERT INTO notes SELECT id, at FROM events WHERE v = 6")
    role = f"owner_{database.name}"
    database.execute(f"CREATE ROLE {role} LOGIN")
    try:
        for table in ("events", "events_default", "events_p2026_03", "notes", "audits"):
            database.execute(f"ALTER TABLE {table} OWNER TO {role}")
        database.execute(f"GRANT CREATE ON SCHEMA public TO {role}")
        result = run_pgtool(
            "partitions",
            "--dsn",
            database.cluster.dsn(database.name, user=role),
            "--table",
            "public.events",
            "--since",
            "2026-04",
            "--ahead",
            "0",
        )
        assert result.returncode == 1, result.stderr
        assert (
            "foreign keys reference it (" in result.stderr
            and "notes_id_at_fkey on public.notes" in result.stderr
        )
        assert scalar(database, "SELECT count(*) FROM notes") == 6
        assert scalar(database, "SELECT count(*) FROM events_default") == 1
    finally:
        database.execute(f"DROP OWNED BY {role} CASCADE")
        database.execute(f"DROP ROLE {role}")


def test_pushes_future_count_and_default_rows_after_the_run(database, pushgateway):
    database.execute(EVENTS_DDL)
    month = current_month()
    database.execute("CREATE TABLE events_default PARTITION OF events DEFAULT")
    # one row for this month (moved by the run) and two for a month far past --ahead (they stay)
    far = add_months(month, 24)
    database.execute(
        "INSERT INTO events (at, v) VALUES (%s, 1), (%s, 2), (%s, 3)",
        (f"{month:%Y-%m}-02 00:00+00", f"{far:%Y-%m}-02 00:00+00", f"{far:%Y-%m}-03 00:00+00"),
    )
    # an old partition (lower bound before next month) is not counted as future
    database.execute(
        "CREATE TABLE events_old PARTITION OF events FOR VALUES FROM ('2001-01-01') TO ('2001-02-01')"
    )
    args = ["partitions", "--dsn", database.dsn, "--table", "public.events", "--ahead", "2"]
    dry = run_pgtool(*args, "--dry-run", "--pushgateway", pushgateway.url)
    assert dry.returncode == 0, dry.stderr
    assert pushgateway.samples("pgtool_partitions_future_count") == []
    assert pushgateway.samples("pgtool_partitions_default_rows") == []
    real = run_pgtool(*args, "--pushgateway", pushgateway.url)
    assert real.returncode == 0, real.stderr
    # this month + 2 ahead created; only next month and the one after start on or after next month's 1st
    assert pushgateway.samples("pgtool_partitions_created", table="public.events") == [3.0]
    assert pushgateway.samples("pgtool_partitions_future_count", table="public.events") == [2.0]
    assert pushgateway.samples("pgtool_partitions_default_rows", table="public.events") == [2.0]
    assert scalar(database, "SELECT count(*) FROM events_default") == 2
