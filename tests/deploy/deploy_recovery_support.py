"""Helpers for tests/deploy/test_deploy_recovery.py (a uniquely named module: `from conftest import ...`
would bind whichever conftest pytest loaded last): the runbook's blocks, a 'production' cluster whose WAL,
base backups, dumps and globals go to an encrypted repository on moto's S3 server as the prod overlay
configures it, and a comparison of two clusters' roles, grants, database properties and row counts."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

from deploy_support import REPO, server_pgtool
from psycopg import sql

from pgharness import binaries_for, retry, start_cluster
from pgtool.pg.binaries import reachable_by_server
from pgtool.pg.cluster import LocalCluster
from pgtool.pg.conn import connect
from pgtool.pg.privileges import server_uid_gid, server_user
from pgtool.repo import Repository, open_repository, wal_name

RUNBOOK = REPO / "runbooks/postgres-recovery.md"
PASSWORDS = {
    "PGTOOL_GRAFANA_READER_PASSWORD": "reader-secret",
    "PGTOOL_REPLICATOR_PASSWORD": "replicator-secret",
    "PGTOOL_PGBOUNCER_AUTH_PASSWORD": "auth-secret",
}
BOTH_LIBRARIES = {"shared_preload_libraries": "pg_stat_statements,auto_explain"}


def blocks(kubernetes: bool) -> dict[int, list[str]]:
    """Scenario number -> its ```bash blocks (kubernetes=False) or its ```bash kubernetes blocks."""
    scenarios: dict[int, list[str]] = {}
    current = None
    pattern = r"^## (\d+)\. |^```bash( kubernetes)?\n(.*?)^```$"
    for match in re.finditer(pattern, RUNBOOK.read_text(), re.MULTILINE | re.DOTALL):
        if match.group(1):
            current = int(match.group(1))
            scenarios[current] = []
        elif current is not None and bool(match.group(2)) == kubernetes:
            scenarios[current].append(match.group(3))
    return scenarios


def as_server() -> list[str]:
    """`runuser -u <server user> --` when the tests run as root (runuser keeps the environment)."""
    user = server_user()
    return ["runuser", "-u", user, "--"] if user else []


def run_scenario(
    number: int, major: int, env: dict[str, str], workdir: Path
) -> subprocess.CompletedProcess[str]:
    """The scenario's plain blocks as one bash script (set -euo pipefail), as the server user, with only
    `env` (what the restore shell sets) plus PATH and HOME."""
    script = workdir / f"scenario{number}.sh"
    script.write_text("set -euo pipefail\n" + "\n".join(blocks(kubernetes=False)[number]))
    script.chmod(0o755)
    bindir = str(reachable_by_server(binaries_for(major)).bindir)  # the venv's 18 may be out of reach
    path = f"{bindir}:{Path(server_pgtool()).parent}:/usr/bin:/bin"
    assignments = [f"{k}={v}" for k, v in {"PATH": path, "HOME": str(workdir), **env}.items()]
    result = subprocess.run(
        [*as_server(), "/usr/bin/env", "-i", *assignments, "/bin/bash", str(script)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd="/",
    )
    assert result.returncode == 0, (
        f"scenario {number} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


class S3Repository:
    """Prod's repository on moto: a bucket of its own, the key file as Secret pgtool-repo-key mounts it
    (32 random bytes, 0400, the pods' uid), and the variables ConfigMap pgtool-repo and Secret
    pgtool-repo-s3 give (PGTOOL_REPO, PGTOOL_REPO_KEY_FILE, AWS_*)."""

    def __init__(self, s3_server: Any, workdir: Path) -> None:
        bucket = f"pgtool-recovery-{os.getpid()}-{workdir.name.lower().replace('_', '-')[-12:]}"
        s3_server.make_bucket(bucket)
        self.url = f"s3://{bucket}/db-prod"
        key_dir = workdir / "repo-key"
        key_dir.mkdir()
        key_dir.chmod(0o755)
        self.key_file = key_dir / "repo.key"
        self.key_file.write_bytes(os.urandom(32))
        ids = server_uid_gid()
        if ids is not None:
            os.chown(self.key_file, *ids)
        self.key_file.chmod(0o400)
        self.env = {k: v for k, v in s3_server.env().items() if k.startswith("AWS_")}
        self.env.update(PGTOOL_REPO=self.url, PGTOOL_REPO_KEY_FILE=str(self.key_file))

    def open(self) -> Repository:
        return open_repository(self.url, key_file=self.key_file, environ=self.env)


def as_server_user(repo: S3Repository, *args: str) -> None:
    """pgtool as the CronJobs run it: as the server's user, in the repository's environment."""
    result = subprocess.run(
        [*as_server(), server_pgtool(), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd="/",
        env={**os.environ, **repo.env},
    )
    assert result.returncode == 0, f"pgtool {args[0]}: {result.stderr[-2000:]}"


class Production:
    """A 'production' cluster archiving through `pgtool archive-wal --repo` (prod's repository.conf) into
    `repo`, with a shop database, bootstrapped as the install hook does."""

    def __init__(self, major: int, repo: S3Repository) -> None:
        self.repo = repo
        exports = " ".join(f"{k}={v}" for k, v in repo.env.items())
        archive = f'export {exports}; {server_pgtool()} archive-wal %p %f --repo "$PGTOOL_REPO"'
        self.cluster = start_cluster(
            major,
            settings={
                **BOTH_LIBRARIES,
                "archive_mode": "on",
                "archive_command": archive,
                "archive_timeout": "60",
            },
        )
        self.bootstrap()
        self.sql("postgres", "CREATE DATABASE shop")
        self.bootstrap("shop")
        self.sql("shop", "CREATE TABLE public.orders (id int PRIMARY KEY, note text)")

    def bootstrap(self, database: str | None = None) -> None:
        args = ["bootstrap-extensions", "--dsn", self.cluster.dsn()]
        args += ["--database", database] if database else []
        result = subprocess.run(
            [server_pgtool(), *args], capture_output=True, text=True, env={**os.environ, **PASSWORDS}
        )
        assert result.returncode == 0, result.stderr[-2000:]

    def sql(self, db: str, statement: str) -> list[tuple[Any, ...]]:
        with connect(self.cluster.dsn(), dbname=db) as conn:
            cur = conn.execute(statement)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def insert(self, first: int, last: int) -> None:
        self.sql(
            "shop",
            f"INSERT INTO public.orders SELECT g, 'order ' || g FROM generate_series({first}, {last}) g",
        )

    def basebackup(self) -> None:
        as_server_user(self.repo, "basebackup", "--dsn", self.cluster.dsn(), "--repo", self.repo.url)

    def dump(self, *databases: str) -> None:
        args = [f"--database={db}" for db in databases]
        as_server_user(self.repo, "backup", "--dsn", self.cluster.dsn(), "--repo", self.repo.url, *args)

    def archive_everything(self) -> None:
        """Switch WAL and wait until the switched segment is in the repository."""
        segment = self.sql("postgres", "SELECT pg_walfile_name(pg_switch_wal())")[0][0]
        store = self.repo.open()
        retry(lambda: store.exists(wal_name(segment)), timeout=120)


def adopt(major: int, data_dir: Path, workdir: Path) -> LocalCluster:
    """Start a data directory the runbook left stopped, to look at what it holds."""
    base = workdir / f"adopt-{data_dir.name}"
    base.mkdir()
    os.chmod(base, 0o777)
    return LocalCluster(binaries_for(major), base, data_dir=data_dir).start()


class Listener:
    """A TCP port on 127.0.0.1 that records every connection made to it: the attacker's host."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


PWNED = "/tmp/pgtool-recovery-pwned"


def hostile_names(port: int) -> list[str]:
    """Database names an attacker with CREATEDB could choose, each aimed at a way a shell loop can fail."""
    return [
        "q'uote\"d",
        "back\\slash",
        f"host=127.0.0.1 port={port} dbname=x",  # a conninfo string where a name is expected
        f"postgresql://127.0.0.1:{port}/x",
        "%41",  # the repository stores it as %2541: it must come back as %41
        "a/b",
        "new\nline",
        "new\rline",  # beside new\nline: neither may be taken for the other
        "tab\tand\x7fdel",
        ".leading-dot",
        "trailing newline\n",
        "x'; CREATE ROLE pwned_e; --",
        f"\\! touch {PWNED}",  # a psql meta-command
        ":'db' :\"db\" :db",  # psql variable references
        "with space",
        "-leading-dash",
        f"$(touch {PWNED})",
    ]


TENANT_OWNER = "tenant \"owner\" 'x' \\ %41"
TENANT_DB = "tenant \"one\" 'restricted'"


def make_tenant(prod: Production) -> None:
    """A role-owned, tenant-restricted database: its own owner role, CONNECT revoked from PUBLIC and
    granted to one role (through a group, with a membership WITH ADMIN OPTION), settings for the database
    and for a role in it, a comment, and an owned schema and table with grants."""
    owner, db = sql.Identifier(TENANT_OWNER), sql.Identifier(TENANT_DB)
    with prod.cluster.connect() as conn:
        for statement in (
            sql.SQL("CREATE ROLE {} LOGIN CREATEDB CONNECTION LIMIT 7").format(owner),
            sql.SQL("CREATE ROLE tenant_group NOLOGIN"),
            sql.SQL("CREATE ROLE tenant_app LOGIN VALID UNTIL '2031-01-01 00:00:00+00'"),
            sql.SQL("GRANT tenant_group TO tenant_app WITH ADMIN OPTION"),
            sql.SQL("ALTER ROLE tenant_app SET statement_timeout = '5s'"),
            sql.SQL("CREATE DATABASE {} OWNER {} CONNECTION LIMIT 20").format(db, owner),
            sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(db),
            sql.SQL("GRANT CONNECT ON DATABASE {} TO tenant_group").format(db),
            sql.SQL("ALTER DATABASE {} SET work_mem = '8MB'").format(db),
            sql.SQL("ALTER DATABASE {} SET search_path = app, public").format(db),
            sql.SQL("ALTER ROLE tenant_app IN DATABASE {} SET lock_timeout = '1s'").format(db),
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(db, sql.Literal("tenant one: 'restricted'")),
        ):
            conn.execute(statement)
    with connect(prod.cluster.dsn(), dbname=TENANT_DB) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA app AUTHORIZATION {}").format(owner))
        conn.execute("CREATE TABLE app.accounts AS SELECT g AS id FROM generate_series(1, 42) g")
        conn.execute(sql.SQL("ALTER TABLE app.accounts OWNER TO {}").format(owner))
        conn.execute("GRANT SELECT ON app.accounts TO tenant_group")


ROLES = """
SELECT r.rolname, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolcanlogin,
       r.rolreplication, r.rolbypassrls, r.rolconnlimit, r.rolvaliduntil,
       (SELECT s.setconfig FROM pg_db_role_setting s WHERE s.setrole = r.oid AND s.setdatabase = 0)
FROM pg_roles r WHERE r.rolname !~ '^pg_' ORDER BY 1"""
MEMBERS = """
SELECT g.rolname, m.rolname, a.admin_option FROM pg_auth_members a
JOIN pg_roles g ON g.oid = a.roleid JOIN pg_roles m ON m.oid = a.member
WHERE g.rolname !~ '^pg_' OR m.rolname !~ '^pg_' ORDER BY 1, 2"""
DATABASES = """
SELECT d.datname, pg_get_userbyid(d.datdba), d.datconnlimit, pg_encoding_to_char(d.encoding),
       ARRAY(SELECT format('%s=%s/%s', a.grantee::regrole, a.privilege_type, a.grantor::regrole)
             FROM aclexplode(d.datacl) a ORDER BY 1),
       d.datacl IS NULL,
       shobj_description(d.oid, 'pg_database'),
       ARRAY(SELECT coalesce(s.setrole::regrole::text, '-') || ':' || array_to_string(s.setconfig, ',')
             FROM pg_db_role_setting s WHERE s.setdatabase = d.oid ORDER BY 1)
FROM pg_database d WHERE NOT d.datistemplate ORDER BY 1"""
TABLES = """
SELECT n.nspname, c.relname, pg_get_userbyid(c.relowner), c.relacl::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_toast' ORDER BY 1, 2"""


def cluster_facts(cluster: LocalCluster) -> dict[str, Any]:
    """Roles (attributes, settings), memberships, each database's owner, connection limit, ACL,
    settings and comment, and in each database its tables' owners, grants and row counts."""
    facts: dict[str, Any] = {}
    with cluster.connect() as conn:
        facts["roles"] = conn.execute(ROLES).fetchall()
        facts["members"] = conn.execute(MEMBERS).fetchall()
        facts["databases"] = conn.execute(DATABASES).fetchall()
    for row in facts["databases"]:
        name = row[0]
        with connect(cluster.dsn(), dbname=name) as conn:
            tables = conn.execute(TABLES).fetchall()
            counted = []
            for schema, table, owner, acl in tables:
                query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
                counted.append((schema, table, owner, acl, conn.execute(query).fetchone()[0]))  # type: ignore[index]
            facts[f"tables of {name!r}"] = counted
    return facts
