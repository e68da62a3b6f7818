"""The sizes of scripts/deploy_sizing.py against the rendered manifests: the WAL archive volume holds the
retention rule's worth of compressed WAL with its margin, and PgBouncer's pods x pooled databases x
max_db_connections plus the direct connections fit in each primary's max_connections. The arithmetic is
the one docs/deployment.md (Sizing) states; the pooled databases are read from the applications'
DATABASE_URLs, so a new pool cannot be added without the check seeing it."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from deploy_support import PGBOUNCER_AUTH_PASSWORD, REPO, find, load_generator

from pgharness import retry


def sizing() -> Any:
    """scripts/deploy_sizing.py, as scripts/deploy_gen.py imports it."""
    return load_generator().deploy_sizing


def conf_value(text: str, name: str) -> str:
    match = re.search(rf"^{name}\s*=\s*(.+?)\s*$", text, re.MULTILINE)
    assert match, name
    return match.group(1).strip("'")


def gib(quantity: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(Gi|Ti)", quantity).groups()  # type: ignore[union-attr]
    return int(number) * (1024 if unit == "Ti" else 1)


@pytest.mark.parametrize("overlay", ["overlays/prod", "overlays/qa"])
def test_wal_archive_holds_the_retention_with_margin(rendered, overlay: str) -> None:
    s = sizing()
    files = find(rendered[overlay], "ConfigMap", "postgres-config")["data"]
    conf = files["postgresql.conf"]
    assert "--compress zstd" in conf_value(conf, "archive_command")
    assert int(conf_value(conf, "archive_timeout")) == s.ARCHIVE_TIMEOUT_SECONDS
    if overlay == "overlays/prod":
        # prod archives to the S3 repository (repository.conf replaces archive_command): no volume to size,
        # still compressed, so the same arithmetic sizes what the bucket holds (docs/deployment.md)
        assert "--compress zstd" in conf_value(files["repository.conf"], "archive_command")
        assert not [o for o in rendered[overlay] if o["metadata"]["name"] == "postgres-wal-archive"]
        return
    pvc = find(rendered[overlay], "PersistentVolumeClaim", "postgres-wal-archive")
    size = gib(pvc["spec"]["resources"]["requests"]["storage"])
    assert size >= s.archive_gib_needed(s.WAL_GIB_PER_DAY[overlay]), (overlay, size)


def test_the_arithmetic_itself() -> None:
    """21 days of 10 GiB/day at 3x is 70 GiB, plus 288 forced segments a day, at most 70 % full."""
    s = sizing()
    assert s.FORCED_SEGMENTS_PER_DAY == 288
    assert s.archive_gib_needed(10.0) == 101
    # uncompressed, as before: 21 days of 10 GiB plus 4.5 GiB of forced segments a day
    assert s.archive_gib_needed(10.0) * s.COMPRESSION_RATIO < 21 * (10 + 4.5)


def pooled_databases(rendered) -> dict[str, set[str]]:
    """Database names applications ask the pooler for, by the primary PgBouncer sends them to."""
    routes: dict[str, str] = {}
    ini = find(rendered["overlays/prod"], "ConfigMap", "pgbouncer-config")["data"]["databases.ini"]
    for line in ini.splitlines():
        if line and not line.startswith(";"):
            name, spec = (part.strip() for part in line.split("=", 1))
            routes[name] = re.search(r"host=(\S+)", spec).group(1)  # type: ignore[union-attr]
    by_primary: dict[str, set[str]] = {}
    for overlay in ("overlays/prod", "overlays/qa"):
        for obj in rendered[overlay]:
            if obj["kind"] != "ConfigMap":
                continue
            for value in (obj.get("data") or {}).values():
                if isinstance(value, str) and value.startswith("postgresql://") and "@pgbouncer:" in value:
                    db = urlsplit(value).path.lstrip("/")
                    by_primary.setdefault(routes.get(db, "postgres (db-prod)"), set()).add(db)
    return by_primary


def test_pgbouncer_fits_in_max_connections(rendered) -> None:
    s = sizing()
    prod = rendered["overlays/prod"]
    ini = find(prod, "ConfigMap", "pgbouncer-config")["data"]["pgbouncer.ini"]
    assert int(conf_value(ini, "max_db_connections")) == s.MAX_DB_CONNECTIONS
    per_pair = int(conf_value(ini, "default_pool_size")) + int(conf_value(ini, "reserve_pool_size"))
    assert per_pair <= s.MAX_DB_CONNECTIONS
    deployment = find(prod, "Deployment", "pgbouncer")["spec"]
    pods = s.pooler_pods_at_most(deployment["replicas"], deployment["strategy"]["rollingUpdate"]["maxSurge"])
    assert pods == 4  # prod runs 3, plus one surging during a rollout
    routes = pooled_databases(rendered)
    assert routes == {"postgres (db-prod)": {"shop"}, "postgres.db-qa.svc.cluster.local": {"shop_qa"}}
    for overlay in ("overlays/prod", "overlays/qa"):  # each primary's own max_connections
        conf = find(rendered[overlay], "ConfigMap", "postgres-config")["data"]["postgresql.conf"]
        max_connections = int(conf_value(conf, "max_connections"))
        primary = "postgres (db-prod)" if overlay == "overlays/prod" else "postgres.db-qa.svc.cluster.local"
        needed = s.connections_needed(pods, len(routes[primary]))
        assert needed <= max_connections, (overlay, needed, max_connections)


def test_running_pgbouncer_has_the_derived_limit(pgbouncer_setup) -> None:
    with psycopg.connect(
        pgbouncer_setup.conninfo("pgbouncer", "pgbouncer_auth", PGBOUNCER_AUTH_PASSWORD),
        autocommit=True,
        prepare_threshold=None,
    ) as admin:
        cur = admin.cursor()
        cur.execute("SHOW CONFIG")
        names = [d.name for d in cur.description]
        config = retry(lambda: {row[names.index("key")]: row[names.index("value")] for row in cur.fetchall()})
    assert config["max_db_connections"] == str(sizing().MAX_DB_CONNECTIONS)


def test_docs_state_the_numbers() -> None:
    s = sizing()
    text = (REPO / "docs/deployment.md").read_text()
    section = text.split("## Sizing", 1)[1].split("\n## ", 1)[0]
    for fact in (
        f"{s.RETENTION_DAYS} days",
        f"{s.COMPRESSION_RATIO:g}x",
        f"{int(s.FILL_LIMIT * 100)} %",
        "none: the S3 bucket",  # prod archives into the repository, not a volume
        "16Gi",
        f"max_db_connections = {s.MAX_DB_CONNECTIONS}",
    ):
        assert fact in section, fact
