"""A database's own properties (owner, database ACL, per-database settings, comment): recorded at backup,
re-applied and checked by the drill in its own cluster.

pg_dump keeps them in the archive, but pg_restore applies them only with `--create`, which restores
under the dump's own name and locale; the drill restores into a throwaway database instead. So the
backup records them in the manifest (`database_properties`, read in the dump's own snapshot), and the
drill, once the roles are back (`pgtool.logical.globals_dump`), applies them to its throwaway database
with the statements pg_restore would issue, reads them back and compares: an owner or grantee the
globals did not bring back, or a setting the restoring server refuses, fails the drill. The owner is
also compared with the one the dump's table of contents names.

Manifest field `database_properties`:
    owner     the owning role's name
    acl       pg_database.datacl as aclitem text (null: the default privileges)
    settings  [{"role": name or null, "settings": ["name=value", ...]}] from pg_db_role_setting
    comment   COMMENT ON DATABASE (null: none)
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from pgtool.errors import error_line
from pgtool.logical.dump_sessions import Ident

# Read in the dump's snapshot (pgtool.logical.dumping): pg_database and pg_db_role_setting are readable
# by every role, so a non-superuser backup role records them too.
PROPERTIES_SQL = """
SELECT pg_catalog.pg_get_userbyid(d.datdba), d.datacl::pg_catalog.text[],
  pg_catalog.shobj_description(d.oid, 'pg_database'),
  (SELECT pg_catalog.json_agg(pg_catalog.json_build_object('role', r.rolname, 'settings', s.setconfig)
          ORDER BY r.rolname NULLS FIRST)
   FROM pg_catalog.pg_db_role_setting s LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.setrole
   WHERE s.setdatabase = d.oid)
FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()
"""
# What the drill compares: the ACL exploded (role names, not OIDs), the settings, owner and comment.
_READ_BACK_SQL = """
SELECT pg_catalog.pg_get_userbyid(d.datdba), pg_catalog.shobj_description(d.oid, 'pg_database'),
  (SELECT pg_catalog.json_agg(pg_catalog.json_build_object('role', r.rolname, 'settings', s.setconfig)
          ORDER BY r.rolname NULLS FIRST)
   FROM pg_catalog.pg_db_role_setting s LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.setrole
   WHERE s.setdatabase = d.oid),
  d.datacl IS NULL
FROM pg_catalog.pg_database d WHERE d.datname = %s
"""
_EXPLODE_SQL = """
SELECT pg_catalog.pg_get_userbyid(a.grantor), CASE WHEN a.grantee = 0 THEN NULL
  ELSE pg_catalog.pg_get_userbyid(a.grantee) END, a.privilege_type, a.is_grantable
FROM pg_catalog.aclexplode(%s::pg_catalog.aclitem[]) a ORDER BY 1, 2 NULLS FIRST, 3
"""
_ACL_OF_SQL = "SELECT d.datacl::pg_catalog.text[] FROM pg_catalog.pg_database d WHERE d.datname = %s"
# Settings whose value is a list pg_dump writes element by element (its variable_is_guc_list_quote).
_LIST_SETTINGS = {
    "local_preload_libraries",
    "search_path",
    "session_preload_libraries",
    "shared_preload_libraries",
    "temp_tablespaces",
    "unix_socket_directories",
}


class PropertiesError(Exception):
    """The recorded properties do not apply or do not read back the same (the message says which)."""


def read(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """The current database's properties (the manifest's `database_properties`)."""
    row = conn.execute(PROPERTIES_SQL).fetchone()
    assert row is not None  # the current database exists
    owner, acl, comment, settings = row
    return {"owner": owner, "acl": acl, "settings": settings or [], "comment": comment}


def valid(recorded: object) -> bool:
    """`recorded` has the shape `read` returns (a manifest may be foreign or damaged)."""
    if not isinstance(recorded, dict) or not isinstance(recorded.get("owner"), str):
        return False
    acl, settings = recorded.get("acl"), recorded.get("settings")
    return (
        (acl is None or (isinstance(acl, list) and all(isinstance(a, str) for a in acl)))
        and isinstance(settings, list)
        and all(
            isinstance(s, dict)
            and (s.get("role") is None or isinstance(s.get("role"), str))
            and isinstance(s.get("settings"), list)
            and all(isinstance(v, str) and "=" in v for v in s["settings"])
            for s in settings
        )
        and (recorded.get("comment") is None or isinstance(recorded.get("comment"), str))
    )


def _set_statement(target: sql.Composable, entry: str) -> sql.Composed:
    name, _, value = entry.partition("=")
    if name in _LIST_SETTINGS:
        items = [v.strip().strip('"') for v in value.split(",")] if value else [""]
        values: sql.Composable = sql.SQL(", ").join(sql.Literal(v) for v in items)
    else:
        values = sql.Literal(value)
    return sql.SQL("{} SET {} TO {}").format(target, sql.Identifier(name), values)


def apply(conn: psycopg.Connection[Any], database: str, recorded: dict[str, Any]) -> None:
    """Give `database` the recorded owner, ACL, settings and comment (as a superuser, autocommit)."""
    db = Ident(database)
    statements: list[sql.Composed] = [
        sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db, Ident(recorded["owner"]))
    ]
    for entry in recorded["settings"]:
        role = entry.get("role")
        target = (
            sql.SQL("ALTER ROLE {} IN DATABASE {}").format(Ident(role), db)
            if role is not None
            else sql.SQL("ALTER DATABASE {}").format(db)
        )
        statements += [_set_statement(target, s) for s in entry["settings"]]
    if recorded.get("comment") is not None:
        statements.append(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(db, sql.Literal(recorded["comment"]))
        )
    try:
        for statement in statements:
            conn.execute(statement)
        if recorded.get("acl") is not None:
            _apply_acl(conn, db, recorded["owner"], recorded["acl"])
    except psycopg.Error as exc:
        raise PropertiesError(f"database properties do not restore: {error_line(exc)}") from None


def _apply_acl(conn: psycopg.Connection[Any], db: Ident, owner: str, acl: list[str]) -> None:
    """REVOKE the defaults, then GRANT each recorded privilege as its grantor (the owner's first), as
    pg_restore does. Parsing the aclitems here fails on a role the globals did not bring back."""
    conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
    conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(db, Ident(owner)))
    rows = conn.execute(_EXPLODE_SQL, [acl]).fetchall()
    for grantor, grantee, privilege, grantable in sorted(rows, key=lambda r: r[0] != owner):
        conn.execute(sql.SQL("SET ROLE {}").format(Ident(grantor)))
        conn.execute(
            sql.SQL("GRANT {} ON DATABASE {} TO {}{}").format(
                sql.SQL(privilege),
                db,
                Ident(grantee) if grantee is not None else sql.SQL("PUBLIC"),
                sql.SQL(" WITH GRANT OPTION" if grantable else ""),
            )
        )
        conn.execute("RESET ROLE")


def check(conn: psycopg.Connection[Any], database: str, recorded: dict[str, Any]) -> list[str]:
    """What differs between `database` as restored and the recorded properties, one line each."""
    row = conn.execute(_READ_BACK_SQL, [database]).fetchone()
    assert row is not None
    owner, comment, settings, default_acl = row
    problems = []
    if owner != recorded["owner"]:
        problems.append(f"database owner: {owner!r} restored vs {recorded['owner']!r} recorded")
    restored_acl = None if default_acl else conn.execute(_ACL_OF_SQL, [database]).fetchone()
    want = _exploded(conn, recorded.get("acl"))
    have = _exploded(conn, restored_acl[0] if restored_acl else None)
    if want != have:
        problems.append(f"database privileges: {_show(have)} restored vs {_show(want)} recorded")
    if _settings(settings or []) != _settings(recorded["settings"]):
        problems.append(f"database settings: {settings or []} restored vs {recorded['settings']} recorded")
    if comment != recorded.get("comment"):
        problems.append("database comment differs from the one recorded")
    return problems


def _exploded(conn: psycopg.Connection[Any], acl: list[str] | None) -> list[tuple[Any, ...]] | None:
    return None if acl is None else [tuple(r) for r in conn.execute(_EXPLODE_SQL, [acl]).fetchall()]


def _show(acl: list[tuple[Any, ...]] | None) -> str:
    if acl is None:
        return "the defaults"
    return ", ".join(f"{g or 'PUBLIC'}:{p}{'*' if o else ''}" for _, g, p, o in acl) or "none"


def _settings(entries: list[dict[str, Any]]) -> dict[str | None, list[str]]:
    return {e.get("role"): sorted(e.get("settings") or []) for e in entries}


def toc_owner(listing_owner: str | None, recorded: dict[str, Any]) -> str | None:
    """A problem line when the dump's TOC names another owner than the manifest (None: they agree)."""
    if listing_owner is None or listing_owner == recorded["owner"]:
        return None
    return f"database owner: the dump's TOC says {listing_owner!r}, the manifest {recorded['owner']!r}"
