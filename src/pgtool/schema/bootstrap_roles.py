"""Bootstrap's cluster-wide part: pgtool's least-privilege roles (see `pgtool.schema.bootstrap`).

Each role is NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS; LOGIN only with a known password, sent as a
SCRAM-SHA-256 verifier (`pgtool.schema.scram`) so no plaintext reaches the server or its log. Items are
checked first and changed only when they differ; nothing is ever dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from pgtool.schema import scram

if TYPE_CHECKING:
    from pgtool.schema.bootstrap import BootstrapResult

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
        options: list[sql.Composable] = [sql.SQL(_KEYWORDS[k][0 if v else 1]) for k, v in wanted.items()]
        if password is not None:
            options += [sql.SQL("PASSWORD {}").format(sql.Literal(scram.verifier(conn, role, password)))]
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
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                ident, sql.Literal(scram.verifier(conn, role, password))
            )
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
