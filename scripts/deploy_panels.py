"""Grafana panel builders and the dashboard's data sources and SQL, for scripts/deploy_gen.py (which
lays out the rows). Plain dicts in Grafana's JSON model (schemaVersion 39)."""

from __future__ import annotations

from typing import Any

PROM = {"type": "prometheus", "uid": "${prometheus}"}
# Two PostgreSQL data sources, both as grafana_reader: the primary's pg_stat_statements holds the OLTP
# statements, the replica's the reporting queries moved there. Each SQL panel names the one it reads.
PG_PRIMARY = {"type": "grafana-postgresql-datasource", "uid": "${postgres_primary}"}
PG_REPLICA = {"type": "grafana-postgresql-datasource", "uid": "${postgres_replica}"}
# postgres_exporter's constant label (manifests: --constantLabels=role=...), Promtail's static label.
ROLES = {"primary": ("Primary (OLTP)", PG_PRIMARY), "replica": ("Replica (reporting)", PG_REPLICA)}
LOKI = {"type": "loki", "uid": "${loki}"}
WIDTH = 24

# Statements from pg_stat_statements read through a PostgreSQL data source (grafana_reader, a member of
# pg_monitor). to_jsonb(s) reads whichever column the server version has (PG13 renamed
# total_time, PG17 blk_read_time), like exporter/queries.yaml.
SQL_TOP_BY_MEAN = """SELECT d.datname AS database, s.queryid::text AS queryid,
       sum(s.calls) AS calls,
       round((sum(COALESCE(to_jsonb(s) ->> 'total_exec_time', to_jsonb(s) ->> 'total_time')::float8)
              / sum(s.calls))::numeric, 2) AS mean_ms,
       left(regexp_replace(min(s.query), '\\s+', ' ', 'g'), 200) AS query
  FROM pg_stat_statements AS s
  JOIN pg_database AS d ON d.oid = s.dbid
 WHERE s.calls > 0 AND s.queryid IS NOT NULL
 GROUP BY d.datname, s.queryid
 ORDER BY mean_ms DESC
 LIMIT 20"""

SQL_TOP_BY_IO = """SELECT d.datname AS database, s.queryid::text AS queryid,
       sum(s.calls) AS calls,
       sum(s.shared_blks_read) AS blks_read,
       sum(s.shared_blks_written) AS blks_written,
       sum(s.temp_blks_read + s.temp_blks_written) AS temp_blks,
       round(sum(COALESCE(to_jsonb(s) ->> 'shared_blk_read_time', to_jsonb(s) ->> 'blk_read_time')::float8)
             ::numeric, 1) AS read_ms,
       left(regexp_replace(min(s.query), '\\s+', ' ', 'g'), 200) AS query
  FROM pg_stat_statements AS s
  JOIN pg_database AS d ON d.oid = s.dbid
 WHERE s.calls > 0 AND s.queryid IS NOT NULL
 GROUP BY d.datname, s.queryid
 ORDER BY sum(s.shared_blks_read + s.shared_blks_written + s.temp_blks_read + s.temp_blks_written) DESC
 LIMIT 20"""


# A slow statement leads to its plans: Loki's auto_explain records carry the same query id, and the role
# of the server that logged them (each PostgreSQL pod has its own Promtail).
def plan_link(role: str) -> dict[str, str]:
    return {
        "title": f"auto_explain plans of this query on the {role} (Loki)",
        "url": '/explore?left={"datasource":"${loki}","queries":[{"refId":"A","expr":'
        '"{job=\\"postgresql\\", plan=\\"auto_explain\\", role=\\"'
        + role
        + '\\"} | query_id=\\"${__data.fields.queryid}\\""}]}',
    }


class Builder:
    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.y = 0
        self.next_id = 1

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def row(self, title: str) -> None:
        self.panels.append(
            {
                "type": "row",
                "id": self._id(),
                "title": title,
                "collapsed": False,
                "panels": [],
                "gridPos": {"x": 0, "y": self.y, "w": WIDTH, "h": 1},
            }
        )
        self.y += 1

    def line(self, panels: list[dict[str, Any]], height: int = 8) -> None:
        width = WIDTH // len(panels)
        for i, panel in enumerate(panels):
            panel["id"] = self._id()
            panel["gridPos"] = {"x": i * width, "y": self.y, "w": width, "h": height}
            self.panels.append(panel)
        self.y += height


def prom_target(expr: str, legend: str = "", *, instant: bool = False, ref: str = "A") -> dict[str, Any]:
    target: dict[str, Any] = {"refId": ref, "datasource": PROM, "expr": expr, "legendFormat": legend}
    if instant:
        target.update(instant=True, range=False, format="table")
    return target


def timeseries(title: str, targets: list[dict[str, Any]], unit: str, description: str = "") -> dict[str, Any]:
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": PROM,
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {
            "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]}
        },
    }


def stat(
    title: str,
    expr: str,
    unit: str,
    red_above: float | None = None,
    description: str = "",
    mappings: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    if red_above is not None:
        steps.append({"color": "red", "value": red_above})
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": PROM,
        "targets": [prom_target(expr)],
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "thresholds": {"mode": "absolute", "steps": steps},
                "mappings": mappings or [],
                "noValue": "never",
            },
            "overrides": [],
        },
        "options": {"colorMode": "background", "reduceOptions": {"calcs": ["lastNotNull"]}},
    }


def table(
    title: str,
    targets: list[dict[str, Any]],
    datasource: dict[str, str],
    description: str = "",
    link: dict[str, str] | None = None,
) -> dict[str, Any]:
    overrides = []
    if link:
        overrides.append(
            {
                "matcher": {"id": "byName", "options": "queryid"},
                "properties": [{"id": "links", "value": [link]}],
            }
        )
    return {
        "type": "table",
        "title": title,
        "description": description,
        "datasource": datasource,
        "targets": targets,
        "fieldConfig": {"defaults": {}, "overrides": overrides},
        "transformations": [{"id": "merge", "options": {}}] if datasource is PROM else [],
        "options": {"showHeader": True},
    }


def sql_target(sql: str, datasource: dict[str, str], ref: str = "A") -> dict[str, Any]:
    return {
        "refId": ref,
        "datasource": datasource,
        "rawQuery": True,
        "editorMode": "code",
        "format": "table",
        "rawSql": sql,
    }
