"""Bootstrap's per-database part: pg_stat_statements and PgBouncer's auth_query lookup (see
`pgtool.schema.bootstrap`).

PgBouncer 1.18 runs its auth_query in the database being connected to, hence one copy per database:
schema `pgbouncer`, `pgbouncer.get_auth(username)` (SECURITY DEFINER, search_path pinned on the function,
login roles that are not superusers only) and the view `pgbouncer.userlist` over it, with PUBLIC's access
revoked and `pgbouncer_auth` granted exactly what it needs. A schema or function owned by a non-superuser
is refused: whoever owns them could make the SECURITY DEFINER lookup run as themselves or replace it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.abc import Query

from pgtool.errors import OperationError
from pgtool.schema.bootstrap_roles import PGBOUNCER_AUTH

if TYPE_CHECKING:
    from pgtool.schema.bootstrap import BootstrapResult

GET_AUTH_BODY = """
SELECT r.rolname::text, r.rolpassword::text
FROM pg_catalog.pg_authid r
WHERE r.rolname = p_username
  AND r.rolcanlogin
  AND NOT r.rolsuper
  AND (r.rolvaliduntil IS NULL OR r.rolvaliduntil > pg_catalog.now())
"""
GET_AUTH_SQL = (
    "CREATE OR REPLACE FUNCTION pgbouncer.get_auth(p_username text) "
    "RETURNS TABLE (username text, password text) "
    "LANGUAGE sql STABLE SECURITY DEFINER "
    "SET search_path = pg_catalog, pg_temp "
    "AS $body$" + GET_AUTH_BODY + "$body$"
)
USERLIST_SQL = """
CREATE OR REPLACE VIEW pgbouncer.userlist AS
SELECT a.username, a.password
FROM pg_catalog.pg_roles r
CROSS JOIN LATERAL pgbouncer.get_auth(r.rolname::text) a
"""


def _public_has(conn: psycopg.Connection[Any], acl_sql: str, privilege: str) -> bool:
    """Whether PUBLIC holds `privilege` in the ACL that `acl_sql` selects.

    A NULL ACL means the built-in defaults: PUBLIC may EXECUTE functions, but has nothing on schemas or
    views.
    """
    null_means = "true" if privilege == "EXECUTE" else "false"
    row = conn.execute(
        f"SELECT CASE WHEN acl IS NULL THEN {null_means} ELSE EXISTS "
        "(SELECT 1 FROM aclexplode(acl) a WHERE a.grantee = 0 "
        f"AND a.privilege_type = %s) END FROM ({acl_sql}) AS t(acl)",
        (privilege,),
    ).fetchone()
    return bool(row and row[0])


def _superuser_owned(
    conn: psycopg.Connection[Any], query: str, what: str, db: str, hint: str
) -> tuple[Any, ...] | None:
    """The row `query` finds (None: no such object), whose last two columns are its owner's rolsuper
    and rolname; an object owned by a non-superuser is refused."""
    row = conn.execute(query).fetchone()
    if row and not row[-2]:
        raise OperationError(f"{what} in database {db} is owned by {row[-1]}, not a superuser", hint=hint)
    return row


def _keep_or_run(
    conn: psycopg.Connection[Any],
    result: BootstrapResult,
    db: str,
    in_place: bool,
    kept: str,
    stmt: Query,
    changed: str,
) -> None:
    """Record `kept` when the object is already as wanted, else run `stmt` and record `changed`."""
    if in_place:
        result.in_place.append((db, kept))
    else:
        conn.execute(stmt)
        result.changed.append((db, changed))


def ensure_database(conn: psycopg.Connection[Any], db: str, result: BootstrapResult) -> None:
    """Extension and PgBouncer lookup in the database `conn` is connected to, in one transaction."""
    with conn.transaction():
        row = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'").fetchone()
        # The session's search_path is pinned to '' (pgtool.pg.conn), so the schema is named: public,
        # where monitoring queries (Grafana, postgres_exporter) look for the view.
        create = "CREATE EXTENSION IF NOT EXISTS pg_stat_statements SCHEMA public"
        what = "extension pg_stat_statements"
        _keep_or_run(conn, result, db, bool(row), what, create, f"{what} created")

        what = "schema pgbouncer"
        # Its owner could drop and re-create what PgBouncer's auth_query calls.
        row = _superuser_owned(
            conn,
            "SELECT r.rolsuper, r.rolname FROM pg_catalog.pg_namespace n "
            "JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner WHERE n.nspname = 'pgbouncer'",
            what,
            db,
            "drop it or ALTER SCHEMA pgbouncer OWNER TO a superuser, then run again",
        )
        _keep_or_run(conn, result, db, bool(row), what, "CREATE SCHEMA pgbouncer", f"{what} created")

        what = "function pgbouncer.get_auth(text)"
        # CREATE OR REPLACE keeps a function's owner: SECURITY DEFINER would run as that role.
        row = _superuser_owned(
            conn,
            "SELECT p.prosrc, p.prosecdef, p.proconfig, r.rolsuper, r.rolname FROM pg_catalog.pg_proc p "
            "JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace "
            "JOIN pg_catalog.pg_roles r ON r.oid = p.proowner "
            "WHERE n.nspname = 'pgbouncer' AND p.proname = 'get_auth' "
            "AND p.proargtypes = '25'::pg_catalog.oidvector",
            what,
            db,
            "drop it (DROP FUNCTION pgbouncer.get_auth(text) CASCADE), then run again",
        )
        same = bool(
            row and row[0] == GET_AUTH_BODY and row[1] and row[2] == ["search_path=pg_catalog, pg_temp"]
        )
        _keep_or_run(conn, result, db, same, what, GET_AUTH_SQL, f"{what} {'replaced' if row else 'created'}")

        exists = conn.execute("SELECT pg_catalog.to_regclass('pgbouncer.userlist')").fetchone() != (None,)
        what = "view pgbouncer.userlist"
        _keep_or_run(conn, result, db, exists, what, USERLIST_SQL, f"{what} created")

        auth = sql.Identifier(PGBOUNCER_AUTH)
        grants = [
            (
                "SELECT nspacl FROM pg_namespace WHERE nspname = 'pgbouncer'",
                "USAGE",
                "schema pgbouncer",
                sql.SQL("REVOKE ALL ON SCHEMA pgbouncer FROM PUBLIC"),
                sql.SQL("GRANT USAGE ON SCHEMA pgbouncer TO {}").format(auth),
                "SELECT has_schema_privilege(%s, 'pgbouncer', 'USAGE')",
            ),
            (
                "SELECT proacl FROM pg_proc WHERE oid = 'pgbouncer.get_auth(text)'::regprocedure",
                "EXECUTE",
                "function pgbouncer.get_auth(text)",
                sql.SQL("REVOKE ALL ON FUNCTION pgbouncer.get_auth(text) FROM PUBLIC"),
                sql.SQL("GRANT EXECUTE ON FUNCTION pgbouncer.get_auth(text) TO {}").format(auth),
                "SELECT has_function_privilege(%s, 'pgbouncer.get_auth(text)', 'EXECUTE')",
            ),
            (
                "SELECT relacl FROM pg_class WHERE oid = 'pgbouncer.userlist'::regclass",
                "SELECT",
                "view pgbouncer.userlist",
                sql.SQL("REVOKE ALL ON pgbouncer.userlist FROM PUBLIC"),
                sql.SQL("GRANT SELECT ON pgbouncer.userlist TO {}").format(auth),
                "SELECT has_table_privilege(%s, 'pgbouncer.userlist', 'SELECT')",
            ),
        ]
        for acl_sql, privilege, what, revoke, grant, has_sql in grants:
            public = _public_has(conn, acl_sql, privilege)
            kept, revoked = f"{what}: not granted to PUBLIC", f"{what}: {privilege} revoked from PUBLIC"
            _keep_or_run(conn, result, db, not public, kept, revoke, revoked)
            has_row = conn.execute(has_sql, (PGBOUNCER_AUTH,)).fetchone()
            granted = f"{what}: {privilege} granted to {PGBOUNCER_AUTH}"
            _keep_or_run(conn, result, db, bool(has_row and has_row[0]), granted, grant, granted)
