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
  made by libpq (`pgtool.schema.scram`), so no plaintext reaches the server or its log. A role without a
  password is created NOLOGIN, or left as it is if it exists, with a warning.

Per database (each connectable non-template database, or those named; one transaction each):
- `CREATE EXTENSION IF NOT EXISTS pg_stat_statements SCHEMA public` (named: the session's search_path is
  pinned to '', see pgtool.pg.conn);
- schema `pgbouncer` with `pgbouncer.get_auth(username)`, SECURITY DEFINER with a pinned search_path,
  returning (username, password) from pg_authid for login roles that are not superusers, and the view
  `pgbouncer.userlist` over it. PgBouncer 1.18 runs its auth_query in the database being connected to,
  hence one copy per database. Schema USAGE, function EXECUTE and view SELECT are revoked from PUBLIC and
  granted to pgbouncer_auth only. A schema or function there owned by a non-superuser is refused.

The roles live in `bootstrap_roles`, the per-database part in `bootstrap_database`; this module reads the
passwords, checks the cluster and runs both.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from pgtool.errors import OperationError, UsageError
from pgtool.obs.logging import get_logger
from pgtool.schema.bootstrap_database import ensure_database
from pgtool.schema.bootstrap_roles import (
    GRAFANA_READER,
    PASSWORD_ENV,
    PGBOUNCER_AUTH,
    REPLICATOR,
    ROLES,
    ensure_roles,
)

__all__ = [
    "GRAFANA_READER",
    "PASSWORD_ENV",
    "PGBOUNCER_AUTH",
    "REPLICATOR",
    "ROLES",
    "BootstrapResult",
    "bootstrap",
    "ensure_database",
    "ensure_roles",
    "read_passwords",
]

REQUIRED_PRELOAD = ("pg_stat_statements", "auto_explain")


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
