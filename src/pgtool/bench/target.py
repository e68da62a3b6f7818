"""Where the benchmark runs: a schema of its own in the given database, or a throwaway local cluster.

With a DSN, everything bench creates lives in a fresh schema `pgtool_bench_<random>` (every connection
sets `search_path` to it) and the schema is dropped afterwards, so nothing is left behind. Without one,
a throwaway cluster is initdb'ed and started with the foundation's `LocalCluster` and removed at the end.
Connections always go over TCP to the cluster's 127.0.0.1, so each round trip is a real one.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from pgtool.errors import OperationError, error_line
from pgtool.obs.logging import get_logger
from pgtool.pg.conn import connect, dsn_params

APPLICATION_NAME = "pgtool-bench"
SCHEMA_PREFIX = "pgtool_bench_"


@dataclass
class Target:
    """An open bench target: connect() gives autocommit connections with search_path set to `schema`."""

    dsn: str
    schema: str
    server_version: str
    local_cluster: bool
    # Behind PgBouncer (transaction mode): no session state survives a transaction, so search_path
    # comes from the database's default and psycopg must not prepare statements.
    pooled: bool = False
    direct_dsn: str = ""

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        if self.pooled:
            kwargs["prepare_threshold"] = None
            # Only ever the throwaway cluster pgtool created, whose database default search_path is
            # the bench schema (local_cluster): no other role owns anything there. A session pin would
            # leak to the pooled server connection and break the other clients' unqualified names.
            return connect(self.dsn, application_name=APPLICATION_NAME, pin="off", **kwargs)
        # Pinned to '' at connect (pgtool.pg.conn), then to the bench schema alone, which pgtool has
        # just created: with pg_catalog searched first and nothing but pgtool's own objects after it,
        # the database owner's schemas (public) are never searched.
        conn = connect(self.dsn, application_name=APPLICATION_NAME, **kwargs)
        try:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
        except BaseException:
            conn.close()
            raise
        return conn

    def connect_direct(self) -> psycopg.Connection[Any]:
        """A connection straight to PostgreSQL (setup work that needs a session: seeding, DDL)."""
        if not self.pooled:
            return self.connect()
        return Target(self.direct_dsn, self.schema, self.server_version, self.local_cluster).connect()


def _over_unix_socket(dsn: str) -> bool:
    host = str(dsn_params(dsn).get("host") or "")
    return host == "" or host.startswith("/") or host.startswith("@")


@contextlib.contextmanager
def in_own_schema(dsn: str, *, local_cluster: bool = False) -> Iterator[Target]:
    """A fresh schema in the DSN's database, dropped (CASCADE) when the block ends, whatever happens."""
    log = get_logger()
    if not local_cluster and _over_unix_socket(dsn):
        log.warning(
            "bench connects over a unix socket or libpq's default host: round trips are shorter than "
            "an application's over TCP, so rewrites that save round trips look smaller"
        )
    schema = f"{SCHEMA_PREFIX}{secrets.token_hex(4)}"
    with connect(dsn, application_name=APPLICATION_NAME) as admin:
        row = admin.execute("SHOW server_version").fetchone()
        assert row is not None  # SHOW returns one row
        version = str(row[0])
        try:
            admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        except psycopg.Error as exc:
            raise OperationError(
                f"cannot create the bench schema {schema}: {error_line(exc)}",
                hint="bench needs CREATE on the database (it drops its schema afterwards)",
            ) from None
    log.info("bench schema created", schema=schema, server_version=version)
    try:
        yield Target(dsn=dsn, schema=schema, server_version=version, local_cluster=local_cluster)
    finally:
        drop_schema(dsn, schema)


def drop_schema(dsn: str, schema: str) -> None:
    """Drop the bench schema; a failure is logged loudly (it names the schema to drop by hand)."""
    try:
        with connect(dsn, application_name=APPLICATION_NAME) as admin:
            admin.execute("SET lock_timeout = '30s'")
            admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        get_logger().info("bench schema dropped", schema=schema)
    except Exception as exc:
        get_logger().error("could not drop the bench schema; drop it by hand", schema=schema, error=str(exc))


# A throwaway cluster's data is disposable: fsync off (NON_DURABLE_SETTINGS) is the LocalCluster
# default. Enough connections for --clients and the concurrency checks.
LOCAL_SETTINGS = {"max_connections": "200", "shared_buffers": "128MB"}
POOL_SIZE = 80


@contextlib.contextmanager
def local_cluster(pg_bindir: str | None = None, *, via_pgbouncer: bool = False) -> Iterator[Target]:
    """A throwaway cluster (initdb, start, TCP on 127.0.0.1), stopped and deleted when the block ends.

    via_pgbouncer: connections go through a throwaway PgBouncer in transaction mode (see pooler).
    """
    from pgtool.pg import binaries
    from pgtool.pg.cluster import LocalCluster

    bins = binaries.find(pg_bindir)
    log = get_logger()
    cluster = LocalCluster(bins, settings=LOCAL_SETTINGS)
    try:
        log.info(
            "starting a throwaway cluster",
            version=bins.version,
            port=cluster.port,
            directory=str(cluster.base_dir),
        )
        cluster.init(data_checksums=False).start()
        direct = cluster.dsn("postgres", tcp=True)
        with in_own_schema(direct, local_cluster=True) as target:
            if not via_pgbouncer:
                yield target
                return
            from pgtool.bench.pooler import pgbouncer

            # Server connections PgBouncer opens get the bench schema as their search_path.
            with connect(direct, application_name=APPLICATION_NAME) as admin:
                admin.execute(
                    sql.SQL("ALTER DATABASE postgres SET search_path TO {}").format(
                        sql.Identifier(target.schema)
                    )
                )
            with pgbouncer(cluster.port, cluster.superuser, pool_size=POOL_SIZE) as port:
                yield Target(
                    dsn=f"host=127.0.0.1 port={port} dbname=postgres user={cluster.superuser}",
                    schema=target.schema,
                    server_version=target.server_version,
                    local_cluster=True,
                    pooled=True,
                    direct_dsn=direct,
                )
    finally:
        cluster.cleanup()
        log.info("throwaway cluster removed", port=cluster.port, directory=str(cluster.base_dir))


@contextlib.contextmanager
def open_target(dsn: str, *, pg_bindir: str | None = None, via_pgbouncer: bool = False) -> Iterator[Target]:
    """The given database (own schema) when `dsn` is set, else a throwaway local cluster."""
    if dsn:
        with in_own_schema(dsn) as target:
            yield target
    else:
        with local_cluster(pg_bindir, via_pgbouncer=via_pgbouncer) as target:
            yield target
