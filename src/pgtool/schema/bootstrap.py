"""Bootstrap a cluster for pgtool's monitoring and pooling: extensions, least-privilege roles, PgBouncer auth.

Idempotent and never dropping anything: each item is checked first and only changed when it differs, so
the result lists what changed and what was already in place, and a second run changes nothing.

Cluster-wide (one transaction):
- `shared_preload_libraries` must hold pg_stat_statements and auto_explain; if not, the exact
  `ALTER SYSTEM` to run is reported (and the run ends with exit 1 once everything else is done);
- roles, each NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS:
    grafana_reader  LOGIN, member of pg_monitor (reads every statistics view, pg_stat_statements
                    included), `default_transaction_read_only = on`, no other grants;
    replicator      REPLICATION LOGIN and nothing else (NOINHERIT, no memberships);
    pgbouncer_auth  LOGIN; only EXECUTE on pgbouncer.get_auth and SELECT on pgbouncer.userlist.
  Passwords come from the environment (PASSWORD_ENV) or files, and are sent as SCRAM-SHA-256 verifiers
  computed here (`pgtool.schema.scram`), so no plaintext reaches the server or its log. A role without a
  password is created NOLOGIN, or left as it is if it exists, with a warning.

Per database (each connectable non-template database, or those named; one transaction each):
- `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`;
- schema `pgbouncer` with `pgbouncer.get_auth(username)`, SECURITY DEFINER with a pinned search_path,
  returning (username, password) from pg_authid for login roles that are not superusers, and the view
  `pgbouncer.userlist` over it. PgBouncer 1.18 runs its auth_query in the database being connected to,
  hence one copy per database. Schema USAGE, function EXECUTE and view SELECT are revoked from PUBLIC and
  granted to pgbouncer_auth only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgtool.errors import OperationError, UsageError
from pgtool.obs.logging import get_logger
from pgtool.schema import scram

REQUIRED_PRELOAD = ("pg_stat_statements", "auto_explain")
GRAFANA_READER = "grafana_reader"
REPLICATOR = "replicator"
PGBOUNCER_AUTH = "pgbouncer_auth"
ROLES = (GRAFANA_READER, REPLICATOR, PGBOUNCER_AUTH)
PASSWORD_ENV = {
    GRAFANA_READER: "PGTOOL_GRAFANA_READER_PASSWORD",
    REPLICATOR: "PGTOOL_REPLICATOR_PASSWORD",
    PGBOUNCER_AUTH: "PGTOOL_PGBOUNCER_AUTH_PASSWORD",
}
# Role attributes wanted, as pg_roles columns; LOGIN is decided by whether a password is known.
ROLE_ATTRIBUTES: dict[str, dict[str, bool]] = {
    GRAFANA_READER: {
        "rolsuper": False,
        "rolcreatedb": False,
        "rolcreaterole": False,
        "rolreplication": False,
        "rolbypassrls": False,
        "rolinherit": True,  # pg_monitor's privileges come through inheritance
    },
    REPLICATOR: {
        "rolsuper": False,
        "rolcreatedb": False,
        "rolcreaterole": False,
        "rolreplication": True,
        "rolbypassrls": False,
        "rolinherit": False,
    },
    PGBOUNCER_AUTH: {
        "rolsuper": False,
        "rolcreatedb": False,
        "rolcreaterole": False,
        "rolreplication": False,
        "rolbypassrls": False,
        "rolinherit": False,
    },
}
_KEYWORDS = {
    "rolsuper": ("SUPERUSER", "NOSUPERUSER"),
    "rolcreatedb": ("CREATEDB", "NOCREATEDB"),
    "rolcreaterole": ("CREATEROLE", "NOCREATEROLE"),
    "rolreplication": ("REPLICATION", "NOREPLICATION"),
    "rolbypassrls": ("BYPASSRLS", "NOBYPASSRLS"),
    "rolinherit": ("INHERIT", "NOINHERIT"),
    "rolcanlogin": ("LOGIN", "NOLOGIN"),
}
READ_ONLY_ROLES = (GRAFANA_READER, PGBOUNCER_AUTH)

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


@dataclass
class BootstrapResult:
    """Each item as (scope, what): scope is "cluster" or a database name."""

    changed: list[tuple[str, str]] = field(default_factory=list)
    in_place: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    preload_missing: list[str] = field(default_factory=list)
    preload_fix: str = ""
    databases: list[str] = field(default_factory=list)


# -- passwords -----------------------------------------------------------------------------------
def read_passwords(
    password_files: list[str] | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Passwords per role: from PASSWORD_ENV variables, overridden by `role=path` files.

    A file's content is the password, one trailing newline removed. Raises UsageError for an unknown
    role, a malformed spec, an unreadable or empty file (the message never includes a password).
    """
    env = os.environ if environ is None else environ
    passwords = {role: env[var] for role, var in PASSWORD_ENV.items() if env.get(var)}
    for spec in password_files or []:
        role, sep, path = spec.partition("=")
        if not sep or not role or not path:
            raise UsageError(f"--password-file {spec!r}: expected ROLE=PATH")
        if role not in ROLES:
            raise UsageError(f"--password-file: unknown role {role!r}", hint=f"one of: {', '.join(ROLES)}")
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise UsageError(f"--password-file {role}: cannot read {path}: {exc.strerror}") from None
        text = text[:-1] if text.endswith("\n") else text
        text = text[:-1] if text.endswith("\r") else text
        if not text:
            raise UsageError(f"--password-file {role}: {path} is empty")
        passwords[role] = text
    return passwords


# -- checks --------------------------------------------------------------------------------------
def preload_libraries(conn: psycopg.Connection[Any]) -> list[str]:
    row = conn.execute("SELECT current_setting('shared_preload_libraries')").fetchone()
    value = str(row[0]) if row else ""
    return [lib.strip().strip('"') for lib in value.split(",") if lib.strip()]


def preload_fix(current: list[str]) -> str:
    """The ALTER SYSTEM that adds the missing libraries to the current list (needs a restart)."""
    wanted = current + [lib for lib in REQUIRED_PRELOAD if lib not in current]
    return f"ALTER SYSTEM SET shared_preload_libraries = '{', '.join(wanted)}'; then restart PostgreSQL"


def target_databases(conn: psycopg.Connection[Any], names: list[str] | None) -> list[str]:
    rows = conn.execute(
        "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname"
    ).fetchall()
    available = [r[0] for r in rows]
    if not names:
        return available
    missing = [n for n in names if n not in available]
    if missing:
        raise UsageError(
            f"database(s) not found or not connectable: {', '.join(missing)}",
            hint="check --database; templates are never bootstrapped",
        )
    return list(dict.fromkeys(names))


# -- roles ---------------------------------------------------------------------------------------
def _ensure_role(
    conn: psycopg.Connection[Any], role: str, password: str | None, result: BootstrapResult
) -> None:
    ident = sql.Identifier(role)
    wanted = dict(ROLE_ATTRIBUTES[role])
    row = conn.execute(
        "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolinherit, rolcanlogin, "
        "rolpassword FROM pg_authid WHERE rolname = %s",
        (role,),
    ).fetchone()
    if row is None:
        wanted["rolcanlogin"] = password is not None
        options = [sql.SQL(_KEYWORDS[k][0 if v else 1]) for k, v in wanted.items()]
        if password is not None:
            options += [sql.SQL("PASSWORD {}").format(sql.Literal(scram.verifier(password)))]
        conn.execute(sql.SQL("CREATE ROLE {} {}").format(ident, sql.SQL(" ").join(options)))
        result.changed.append(("cluster", f"role {role} created" + ("" if password else " NOLOGIN")))
        if password is None:
            result.warnings.append(
                f"role {role} created NOLOGIN: no password given (set {PASSWORD_ENV[role]} or "
                f"--password-file {role}=PATH and run again)"
            )
        return
    current = dict(
        zip(
            (
                "rolsuper",
                "rolcreatedb",
                "rolcreaterole",
                "rolreplication",
                "rolbypassrls",
                "rolinherit",
                "rolcanlogin",
            ),
            row[:7],
            strict=True,
        )
    )
    stored_password = row[7]
    if password is not None:
        wanted["rolcanlogin"] = True
    drift = [k for k, v in wanted.items() if current[k] != v]
    if drift:
        options = [sql.SQL(_KEYWORDS[k][0 if wanted[k] else 1]) for k in drift]
        conn.execute(sql.SQL("ALTER ROLE {} {}").format(ident, sql.SQL(" ").join(options)))
        words = " ".join(_KEYWORDS[k][0 if wanted[k] else 1] for k in drift)
        result.changed.append(("cluster", f"role {role} altered: {words}"))
    else:
        result.in_place.append(("cluster", f"role {role} attributes"))
    if password is None:
        result.warnings.append(
            f"role {role}: no password given ({PASSWORD_ENV[role]} or --password-file), its password and "
            "LOGIN were left as they are"
        )
    elif scram.matches(stored_password, password):
        result.in_place.append(("cluster", f"role {role} password"))
    else:
        conn.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(ident, sql.Literal(scram.verifier(password)))
        )
        result.changed.append(("cluster", f"role {role} password set"))


def _ensure_role_setting(
    conn: psycopg.Connection[Any], role: str, name: str, value: str, result: BootstrapResult
) -> None:
    row = conn.execute(
        "SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole "
        "WHERE r.rolname = %s AND s.setdatabase = 0",
        (role,),
    ).fetchone()
    if row and f"{name}={value}" in (row[0] or []):
        result.in_place.append(("cluster", f"role {role} {name}={value}"))
        return
    conn.execute(
        sql.SQL("ALTER ROLE {} SET {} = {}").format(
            sql.Identifier(role), sql.Identifier(name), sql.Literal(value)
        )
    )
    result.changed.append(("cluster", f"role {role} {name}={value}"))


def _ensure_membership(conn: psycopg.Connection[Any], role: str, group: str, result: BootstrapResult) -> None:
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
        "JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = %s AND g.rolname = %s)",
        (role, group),
    ).fetchone()
    if row and row[0]:
        result.in_place.append(("cluster", f"role {role} member of {group}"))
        return
    conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(role)))
    result.changed.append(("cluster", f"role {role} granted {group}"))


def _warn_extra_memberships(
    conn: psycopg.Connection[Any], role: str, allowed: set[str], result: BootstrapResult
) -> None:
    rows = conn.execute(
        "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
        "JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = %s ORDER BY 1",
        (role,),
    ).fetchall()
    extra = [r[0] for r in rows if r[0] not in allowed]
    if extra:
        result.warnings.append(
            f"role {role} is also a member of {', '.join(extra)}: more than it needs (left as is; "
            f"REVOKE {', '.join(extra)} FROM {role} if unintended)"
        )


def ensure_roles(
    conn: psycopg.Connection[Any], passwords: Mapping[str, str], result: BootstrapResult
) -> None:
    with conn.transaction():
        for role in ROLES:
            _ensure_role(conn, role, passwords.get(role), result)
        _ensure_membership(conn, GRAFANA_READER, "pg_monitor", result)
        _warn_extra_memberships(conn, GRAFANA_READER, {"pg_monitor"}, result)
        _warn_extra_memberships(conn, REPLICATOR, set(), result)
        _warn_extra_memberships(conn, PGBOUNCER_AUTH, set(), result)
        for role in READ_ONLY_ROLES:
            _ensure_role_setting(conn, role, "default_transaction_read_only", "on", result)


# -- per database --------------------------------------------------------------------------------
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


def ensure_database(conn: psycopg.Connection[Any], db: str, result: BootstrapResult) -> None:
    """Extension and PgBouncer lookup in the database `conn` is connected to, in one transaction."""
    with conn.transaction():
        row = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'").fetchone()
        if row:
            result.in_place.append((db, "extension pg_stat_statements"))
        else:
            # The session's search_path is pinned to '' (pgtool.pg.conn), so the schema is named: public,
            # where monitoring queries (Grafana, postgres_exporter) look for the view.
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements SCHEMA public")
            result.changed.append((db, "extension pg_stat_statements created"))

        row = conn.execute(
            "SELECT r.rolsuper, r.rolname FROM pg_catalog.pg_namespace n "
            "JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner WHERE n.nspname = 'pgbouncer'"
        ).fetchone()
        if row and not row[0]:
            # Its owner could drop and re-create what PgBouncer's auth_query calls.
            raise OperationError(
                f"schema pgbouncer in database {db} is owned by {row[1]}, not a superuser",
                hint="drop it or ALTER SCHEMA pgbouncer OWNER TO a superuser, then run again",
            )
        if row:
            result.in_place.append((db, "schema pgbouncer"))
        else:
            conn.execute("CREATE SCHEMA pgbouncer")
            result.changed.append((db, "schema pgbouncer created"))

        row = conn.execute(
            "SELECT p.prosrc, p.prosecdef, p.proconfig, r.rolsuper, r.rolname FROM pg_catalog.pg_proc p "
            "JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace "
            "JOIN pg_catalog.pg_roles r ON r.oid = p.proowner "
            "WHERE n.nspname = 'pgbouncer' AND p.proname = 'get_auth' "
            "AND p.proargtypes = '25'::pg_catalog.oidvector"
        ).fetchone()
        if row and not row[3]:
            # CREATE OR REPLACE keeps a function's owner: SECURITY DEFINER would run as that role.
            raise OperationError(
                f"function pgbouncer.get_auth(text) in database {db} is owned by {row[4]}, not a superuser",
                hint="drop it (DROP FUNCTION pgbouncer.get_auth(text) CASCADE), then run again",
            )
        if row and row[0] == GET_AUTH_BODY and row[1] and row[2] == ["search_path=pg_catalog, pg_temp"]:
            result.in_place.append((db, "function pgbouncer.get_auth(text)"))
        else:
            conn.execute(GET_AUTH_SQL)
            result.changed.append(
                (db, "function pgbouncer.get_auth(text) " + ("replaced" if row else "created"))
            )

        if conn.execute("SELECT pg_catalog.to_regclass('pgbouncer.userlist')").fetchone() != (None,):
            result.in_place.append((db, "view pgbouncer.userlist"))
        else:
            conn.execute(USERLIST_SQL)
            result.changed.append((db, "view pgbouncer.userlist created"))

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
            if _public_has(conn, acl_sql, privilege):
                conn.execute(revoke)
                result.changed.append((db, f"{what}: {privilege} revoked from PUBLIC"))
            else:
                result.in_place.append((db, f"{what}: not granted to PUBLIC"))
            has_row = conn.execute(has_sql, (PGBOUNCER_AUTH,)).fetchone()
            if has_row and has_row[0]:
                result.in_place.append((db, f"{what}: {privilege} granted to {PGBOUNCER_AUTH}"))
            else:
                conn.execute(grant)
                result.changed.append((db, f"{what}: {privilege} granted to {PGBOUNCER_AUTH}"))


# -- the job -------------------------------------------------------------------------------------
def bootstrap(
    dsn: str, *, databases: list[str] | None = None, passwords: Mapping[str, str]
) -> BootstrapResult:
    """Bootstrap the cluster `dsn` points at (see the module docstring) and return what happened.

    Raises ConnectError when a database cannot be reached, UsageError for unknown databases,
    OperationError when a statement fails (that transaction rolled back; earlier ones stay).
    """
    from pgtool.pg.conn import connect

    log = get_logger()
    result = BootstrapResult()
    with connect(dsn) as conn:
        conn.prepare_threshold = None
        current = preload_libraries(conn)
        result.preload_missing = [lib for lib in REQUIRED_PRELOAD if lib not in current]
        if result.preload_missing:
            result.preload_fix = preload_fix(current)
            log.warning(
                "shared_preload_libraries incomplete", missing=result.preload_missing, fix=result.preload_fix
            )
        result.databases = target_databases(conn, databases)
        try:
            ensure_roles(conn, passwords, result)
        except psycopg.Error as exc:
            raise OperationError(
                f"bootstrapping roles failed: {' '.join(str(exc).split())}",
                hint="run as a superuser (or a role with CREATEROLE)",
            ) from None
    for db in result.databases:
        with connect(dsn, dbname=db) as conn:
            conn.prepare_threshold = None
            try:
                ensure_database(conn, db, result)
            except psycopg.Error as exc:
                raise OperationError(
                    f"bootstrapping database {db} failed: {' '.join(str(exc).split())}",
                    hint="run as a superuser: CREATE EXTENSION pg_stat_statements and SECURITY DEFINER "
                    "over pg_authid need one",
                ) from None
    for scope, what in result.changed:
        log.info("changed", scope=scope, item=what)
    for warning in result.warnings:
        log.warning(warning)
    return result
