"""Deployment sizes derived in one place: the WAL archive volume and PgBouncer's server connections.

scripts/deploy_gen.py writes the derived PgBouncer limit into manifests/base/files/pgbouncer.ini;
tests/deploy/test_deploy_sizing.py checks the rendered manifests against this arithmetic, and
docs/deployment.md ("Sizing") explains it with these numbers.
"""

from __future__ import annotations

import math

# -- WAL archive ---------------------------------------------------------------------------------------
SEGMENT_BYTES = 16 * 1024**2
ARCHIVE_TIMEOUT_SECONDS = 300  # postgresql.conf: the worst-case loss from the archive alone
# A segment switched by archive_timeout is zero-filled after its last record; zstd level 1 stores one in
# about 1 KiB (measured on PostgreSQL 15 and 18). tests/deploy checks a real one stays under this bound.
IDLE_SEGMENT_BYTES = 64 * 1024
FORCED_SEGMENTS_PER_DAY = 86400 // ARCHIVE_TIMEOUT_SECONDS
# WAL is pruned only when the weekly base backup completes, back to the second-newest base backup: up to
# 14 days. One missed week more (PgtoolBaseBackupStale fires after 8 days; someone must act) makes 21.
RETENTION_DAYS = 14 + 7
# zstd -1 on WAL: 6.6x measured on the sample schema's bulk load; OLTP updates with full-page images
# compress less. 3x is the planning figure.
COMPRESSION_RATIO = 3.0
# The volume may be at most 70 % full at the worst point of the cycle: PostgresWalArchiveVolumeFilling
# fires below 30 % free, so a correctly sized archive never alerts.
FILL_LIMIT = 0.70
# The WAL each overlay's primary is planned to write a day, uncompressed (pg_stat_wal.wal_bytes per day).
WAL_GIB_PER_DAY = {"overlays/prod": 10.0, "overlays/qa": 1.0}


def archive_gib_needed(wal_gib_per_day: float) -> int:
    """GiB the archive volume needs for RETENTION_DAYS of compressed WAL, forced segments included,
    filled to FILL_LIMIT at most."""
    idle_gib = FORCED_SEGMENTS_PER_DAY * IDLE_SEGMENT_BYTES / 1024**3
    per_day = wal_gib_per_day / COMPRESSION_RATIO + idle_gib
    return math.ceil(RETENTION_DAYS * per_day / FILL_LIMIT)


# -- PgBouncer against max_connections -----------------------------------------------------------------
# Server connections PgBouncer may open per database and per pod (max_db_connections). It caps every
# user's pool of that database together (default_pool_size 20 + reserve_pool_size 5 per user).
MAX_DB_CONNECTIONS = 40
# Connections that do not go through PgBouncer, per primary. Walsenders (the replica, pg_basebackup) have
# their own max_wal_senders slots and are not counted here.
DIRECT_CONNECTIONS = {
    "superuser_reserved_connections (PostgreSQL default)": 3,
    "pgtool CronJobs that can overlap (backup -j 2, verify -j 2, partitions, refresh-mv, canary)": 12,
    "postgres_exporter (one per discovered database)": 5,
    "migrations over DATABASE_URL_DIRECT (2 services)": 4,
    "operators (psql, the restore shell)": 5,
}


def pooler_pods_at_most(replicas: int, max_surge: int) -> int:
    """Pods that may run at once: during a rolling update maxSurge extra ones hold connections too."""
    return replicas + max_surge


def server_connections_at_most(pods: int, databases: int) -> int:
    """Upper bound of PgBouncer's server connections to one primary."""
    return pods * databases * MAX_DB_CONNECTIONS


def connections_needed(pods: int, databases: int) -> int:
    return server_connections_at_most(pods, databases) + sum(DIRECT_CONNECTIONS.values())
