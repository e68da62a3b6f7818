"""A minimal Prometheus exporter for PgBouncer's pools (the pgbouncer pod's sidecar).

Why not an off-the-shelf one: Debian's prometheus-pgbouncer-exporter 1.7 crashes on PgBouncer 1.8+ (it
reads SHOW STATS columns that were renamed), and PyPI's 2.1.2 pins psycopg2 2.8.5, which does not build
on current Pythons. The metric names are those of prometheus-community/pgbouncer_exporter, so alerts and
dashboards keep working if that exporter replaces this one.

Each scrape connects to the admin console (database `pgbouncer`, libpq's PGHOST/PGPORT/PGUSER/PGPASSWORD,
a user listed in stats_users) and runs SHOW POOLS. Runs with the pgtool image's Python (psycopg 3,
prometheus_client):  python3 pgbouncer_exporter.py --port 9127
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Iterator

import psycopg
from prometheus_client import start_http_server
from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.registry import Collector

# SHOW POOLS column -> (metric, help, scale)
POOL_COLUMNS = {
    "cl_active": ("pgbouncer_pools_client_active_connections", "Clients linked to a server connection", 1.0),
    "cl_waiting": (
        "pgbouncer_pools_client_waiting_connections",
        "Clients waiting for a server connection",
        1.0,
    ),
    "sv_active": ("pgbouncer_pools_server_active_connections", "Server connections linked to a client", 1.0),
    "sv_idle": ("pgbouncer_pools_server_idle_connections", "Server connections idle and ready", 1.0),
    "sv_used": (
        "pgbouncer_pools_server_used_connections",
        "Server connections idle past server_check_delay",
        1.0,
    ),
    "maxwait": ("pgbouncer_pools_client_maxwait_seconds", "Longest wait of a waiting client, seconds", 1.0),
}


class PoolsCollector(Collector):
    def __init__(self, timeout: int = 5) -> None:
        self.timeout = timeout

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("pgbouncer_up", "1 if PgBouncer's admin console answered SHOW POOLS")
        families = {
            col: GaugeMetricFamily(name, doc, labels=["database", "user"])
            for col, (name, doc, _) in POOL_COLUMNS.items()
        }
        try:
            # The admin console speaks the simple query protocol only, and has no transactions.
            with psycopg.connect(
                dbname="pgbouncer", autocommit=True, prepare_threshold=None, connect_timeout=self.timeout
            ) as conn:
                cur = conn.cursor()
                cur.execute("SHOW POOLS")
                names = [d.name for d in cur.description or []]
                rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        except psycopg.Error:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        for row in rows:
            for col, (_, _, scale) in POOL_COLUMNS.items():
                if col not in row:
                    continue
                value = float(row[col]) * scale
                if col == "maxwait" and "maxwait_us" in row:
                    value += float(row["maxwait_us"]) / 1e6
                families[col].add_metric([row["database"], row["user"]], value)
        yield from families.values()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9127)
    parser.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a pod's metrics port
    args = parser.parse_args()
    REGISTRY.register(PoolsCollector())
    start_http_server(args.port, addr=args.host)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()


if __name__ == "__main__":
    main()
