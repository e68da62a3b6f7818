"""partitions and refresh-mv through PgBouncer in transaction pooling mode: search_path pinned per
transaction, never left on the pooled server connection (issue 14 finding 1)."""

from __future__ import annotations

import psycopg
from pgbouncer_harness import PgBouncer

from pgharness import run_pgtool

TRAPS = """
CREATE TABLE public.trap_log (fn text);
CREATE FUNCTION public.pg_try_advisory_xact_lock(integer, integer) RETURNS boolean LANGUAGE sql
    AS $$ INSERT INTO public.trap_log VALUES ('pg_try_advisory_xact_lock') RETURNING true $$;
CREATE FUNCTION public.pg_advisory_xact_lock(integer, integer) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO public.trap_log VALUES ('pg_advisory_xact_lock') $$;
CREATE FUNCTION public.set_config(text, text, boolean) RETURNS text LANGUAGE sql
    AS $$ INSERT INTO public.trap_log VALUES ('set_config') RETURNING $2 $$;
CREATE TABLE public.events (at timestamptz NOT NULL, v int) PARTITION BY RANGE (at);
CREATE MATERIALIZED VIEW public.totals AS SELECT 1 AS id, 2 AS n;
CREATE UNIQUE INDEX ON public.totals (id);
"""


def test_partitions_and_refresh_mv_through_pgbouncer_leave_no_session_state(database):
    database.execute(TRAPS)
    database.execute(f'ALTER DATABASE "{database.name}" SET search_path = public, pg_catalog')
    superuser = database.cluster.superuser
    # One server connection: whatever pgtool leaves on it, the next client gets.
    bouncer = PgBouncer(
        "127.0.0.1",
        database.cluster.port,
        pool_mode="transaction",
        auth_type="trust",
        auth_users={superuser: ""},
        extra={"default_pool_size": "1", "max_client_conn": "10"},
    )
    with bouncer:
        dsn = bouncer.dsn(database.name, user=superuser)
        result = run_pgtool("refresh-mv", "--dsn", dsn, "--all")
        assert result.returncode == 0, result.stderr + bouncer.log_tail()
        assert result.stdout.startswith("refreshed ")
        result = run_pgtool("refresh-mv", "--dsn", dsn, "totals")  # a bare name, through the pool
        assert result.returncode == 0, result.stderr
        result = run_pgtool("partitions", "--dsn", dsn, "--table", "public.events", "--ahead", "1")
        assert result.returncode == 0, result.stderr
        assert "2 created" in result.stdout
        with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
            # A session-level pin would still be here, breaking every other client's unqualified names.
            assert conn.execute("SHOW search_path").fetchone()[0] == "public, pg_catalog"
    assert database.execute("SELECT fn FROM public.trap_log") == []
