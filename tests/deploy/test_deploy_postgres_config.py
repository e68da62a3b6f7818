"""The PostgreSQL config files of the manifests, used by real servers the way the pods use them:
`postgres -c config_file=.../postgresql.conf` with the manifests' pg_hba.conf, archive_command running
pgtool archive-wal, and a standby seeded by the replica Deployment's own init-container script and started
with `config_file=.../replica.conf` (which includes postgresql.conf). Only ports, paths and
listen_addresses are rewritten (and shared_buffers made small). The prod overlay's repository.conf
(archive_command and restore_command with `--repo "$PGTOOL_REPO"`) is used as rendered: the servers get
the environment the pods get (ConfigMap pgtool-repo, the Secrets' variables and key file), pointed at a
bucket on moto's S3 server, encrypted with a key file as the Secret mounts it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from deploy_support import find, rewrite, server_pgtool

from pgharness import binaries_for, retry, rmtree, server_writable_dir
from pgtool.pg.cluster import free_port
from pgtool.pg.privileges import give_to_server, server_user
from pgtool.repo import RepoKeyError, open_repository, wal_name

REPLICATOR_PASSWORD = "replicator-secret"
# lines of manifests/base/files/*.conf that name pod paths or Service names
ARCHIVE_COMMAND = "archive_command = 'pgtool archive-wal %p %f --archive-dir /wal-archive --compress zstd'"
RESTORE_COMMAND = "restore_command = 'pgtool restore-wal %f %p --archive-dir /wal-archive'"
PRIMARY_CONNINFO = (
    "primary_conninfo = 'host=postgres port=5432 user=replicator application_name=postgres-replica "
    "passfile=/var/run/postgresql-auth/pgpass'"
)


def as_server(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    user = server_user()
    prefix = ["runuser", "-u", user, "--"] if user else []
    return subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=300, cwd="/", **kwargs)


class Server:
    def __init__(self, bindir: Path, data: Path, config: Path, port: int, env: dict[str, str]) -> None:
        self.bindir, self.data, self.config, self.port = bindir, data, config, port
        self.env = env  # the container's environment, which archive_command and restore_command inherit

    def start(self) -> None:
        result = as_server(
            [
                "/usr/bin/env",
                *(f"{k}={v}" for k, v in self.env.items()),
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.data.parent / f"{self.data.name}.log"),
                "-o",
                f"-c config_file={self.config}",
                "-w",
                "-t",
                "120",
                "start",
            ]
        )
        assert result.returncode == 0, (
            result.stderr + (self.data.parent / f"{self.data.name}.log").read_text()
        )

    def stop(self) -> None:
        as_server([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"])

    def psql(self, sql: str, db: str = "postgres") -> str:
        """As the OS user postgres over the socket: the manifests' `local all postgres peer` line."""
        result = as_server(
            [
                str(self.bindir / "psql"),
                "-X",
                "-At",
                "-h",
                "/var/run/postgresql",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ]
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()


@pytest.fixture(scope="module")
def servers(rendered, s3_server) -> Iterator[dict[str, Any]]:
    files = find(rendered["overlays/prod"], "ConfigMap", "postgres-config")["data"]
    repo_config = find(rendered["overlays/prod"], "ConfigMap", "pgtool-repo")["data"]
    replica = find(rendered["overlays/prod"], "Deployment", "postgres-replica")
    seed_script = replica["spec"]["template"]["spec"]["initContainers"][0]["args"][0]
    bindir = binaries_for(15).bindir
    pgtool = Path(server_pgtool())  # run by the server user, who may not reach this checkout
    work = server_writable_dir("pgtool-pgconf-")
    archive, logs, auth = work / "wal-archive", work / "log", work / "auth"
    for path in (archive, logs, auth):
        path.mkdir()
        give_to_server(path)
    primary_port, standby_port = free_port(), free_port()
    # The pods' repository environment: ConfigMap pgtool-repo with the test's bucket on moto for the real
    # one, the Secret's AWS variables (moto's, plus its endpoint), the key file as the Secret mounts it.
    bucket = f"pgtool-deploy-{os.getpid()}"
    s3_server.make_bucket(bucket)
    key_file = work / "repo-key" / "repo.key"
    key_file.parent.mkdir()
    key_file.write_bytes(os.urandom(32))
    for path in (key_file.parent, key_file):
        give_to_server(path)
    key_file.chmod(0o400)
    repo_env = {
        **repo_config,
        **{k: v for k, v in s3_server.env().items() if k.startswith("AWS_")},
        "PGTOOL_REPO": f"s3://{bucket}/db-prod",
        "PGTOOL_REPO_KEY_FILE": str(key_file),
        "PATH": "/usr/bin:/bin",
    }
    assert repo_config["PGTOOL_REPO"].startswith("s3://") and repo_config["PGTOOL_REPO_KEY_FILE"]

    def write_conf(directory: Path, port: int) -> None:
        directory.mkdir()
        give_to_server(directory)
        (logs / directory.name).mkdir()
        give_to_server(logs / directory.name)
        (directory / "postgresql.conf").write_text(
            rewrite(
                files["postgresql.conf"],
                {
                    "listen_addresses = '*'": "listen_addresses = '127.0.0.1'",
                    "port = 5432": f"port = {port}",
                    "hba_file = '/etc/postgresql/pg_hba.conf'": f"hba_file = '{directory}/pg_hba.conf'",
                    "shared_buffers = '1GB'": "shared_buffers = '128MB'",
                    # each server its own, as each pod has its own logs volume
                    "log_directory = '/var/log/postgresql'": f"log_directory = '{logs / directory.name}'",
                    ARCHIVE_COMMAND: f"archive_command = '{pgtool} archive-wal %p %f --archive-dir {archive} --compress zstd'",  # noqa: E501
                },
            )
        )
        (directory / "pg_hba.conf").write_text(files["pg_hba.conf"])
        # as rendered, only pgtool's path: it names the repository through $PGTOOL_REPO
        (directory / "repository.conf").write_text(
            files["repository.conf"].replace("'pgtool ", f"'{pgtool} ")
        )
        (directory / "replica.conf").write_text(
            rewrite(
                files["replica.conf"],
                {
                    PRIMARY_CONNINFO: (
                        f"primary_conninfo = 'host=127.0.0.1 port={primary_port} user=replicator "
                        f"application_name=postgres-replica passfile={auth}/pgpass'"
                    ),
                    RESTORE_COMMAND: f"restore_command = '{pgtool} restore-wal %f %p --archive-dir {archive}'",  # noqa: E501
                },
            )
        )
        for path in directory.iterdir():
            give_to_server(path)

    write_conf(work / "primary-etc", primary_port)
    write_conf(work / "standby-etc", standby_port)
    primary = Server(bindir, work / "primary", work / "primary-etc/postgresql.conf", primary_port, repo_env)
    standby = Server(bindir, work / "standby", work / "standby-etc/replica.conf", standby_port, repo_env)
    started: list[Server] = []
    try:
        result = as_server(
            [str(bindir / "initdb"), "-D", str(primary.data), "-U", "postgres", "--auth=trust", "--no-sync"]
        )
        assert result.returncode == 0, result.stderr
        primary.start()
        started.append(primary)
        # pgtool on the pod's socket as the OS user postgres (the `local all postgres peer` line)
        boot = as_server(
            [
                "/usr/bin/env",
                f"PGTOOL_REPLICATOR_PASSWORD={REPLICATOR_PASSWORD}",
                str(pgtool),
                "bootstrap-extensions",
                "--dsn",
                f"host=/var/run/postgresql port={primary_port} user=postgres",
            ]
        )
        assert boot.returncode == 0, boot.stderr[-2000:]
        # The replica Deployment's init container, as written (only the primary's address differs).
        script = (
            seed_script.replace("postgres:5432:*", f"127.0.0.1:{primary_port}:*")
            .replace("--host=postgres --port=5432", f"--host=127.0.0.1 --port={primary_port}")
            .replace("/var/run/postgresql-auth", str(auth))
        )
        seeded = as_server(
            [
                "/usr/bin/env",
                f"PATH={bindir}:/usr/bin:/bin",
                f"PGDATA={standby.data}",
                f"REPLICATOR_PASSWORD={REPLICATOR_PASSWORD}",
                "/bin/sh",
                "-ec",
                script,
            ],
        )
        assert seeded.returncode == 0, seeded.stderr
        standby.start()
        started.append(standby)
        yield {
            "primary": primary,
            "standby": standby,
            "archive": archive,
            "repo": lambda: open_repository(repo_env["PGTOOL_REPO"], key_file=key_file, environ=repo_env),
            "repo_env": repo_env,
            "bindir": bindir,
            "standby_logs": logs / "standby-etc",
        }
    finally:
        for server in reversed(started):
            server.stop()
        rmtree(work)


def test_primary_runs_the_manifest_settings(servers) -> None:
    primary = servers["primary"]
    assert primary.psql("SHOW shared_preload_libraries") == "pg_stat_statements,auto_explain"
    assert primary.psql("SHOW archive_mode") == "on"
    assert primary.psql("SHOW auto_explain.log_format") == "json"
    assert primary.psql("SHOW log_destination") == "jsonlog"


def test_archive_command_archives_through_pgtool(servers) -> None:
    """Into the repository (prod's repository.conf), encrypted with the key file; never the local volume."""
    primary = servers["primary"]
    assert "--repo" in primary.psql("SHOW archive_command")
    segment = primary.psql("SELECT pg_walfile_name(pg_switch_wal())")
    repo = servers["repo"]()
    retry(lambda: repo.exists(wal_name(segment)), timeout=60)
    assert primary.psql("SELECT failed_count FROM pg_stat_archiver") == "0"
    assert len(repo.read_bytes(wal_name(segment))) == 16 * 1024 * 1024  # decrypted, decompressed, verified
    assert not list(servers["archive"].iterdir())
    with pytest.raises(RepoKeyError):  # encrypted: without the key it is unreadable
        keyless = {k: v for k, v in servers["repo_env"].items() if k != "PGTOOL_REPO_KEY_FILE"}
        open_repository(servers["repo_env"]["PGTOOL_REPO"], environ=keyless).read_bytes(wal_name(segment))


def test_idle_forced_segments_archive_compressed_and_small(servers) -> None:
    """The arithmetic of docs/deployment.md (WAL archive sizing): archive_timeout switches a nearly empty
    segment every 5 minutes; compressed, each costs at most IDLE_SEGMENT_BYTES, not 16 MiB."""
    from deploy_support import load_generator

    primary, repo = servers["primary"], servers["repo"]()
    names = []
    for _ in range(3):
        primary.psql("SELECT pg_catalog.txid_current()")  # one record, as an idle database's checkpoints
        names.append(primary.psql("SELECT pg_walfile_name(pg_switch_wal())"))
    for name in names:
        retry(lambda name=name: repo.exists(wal_name(name)), timeout=60)
        (stored,) = [o for o in repo.list(wal_name(name).rsplit("/", 1)[0]) if o.name == wal_name(name)]
        assert stored.size <= load_generator().deploy_sizing.IDLE_SEGMENT_BYTES  # compressed, then encrypted


def test_hba_allows_replication_only_to_the_replicator(servers) -> None:
    primary = servers["primary"]
    conninfo = f"host=127.0.0.1 port={primary.port} dbname=postgres"
    # replication=true: a physical replication connection (pg_basebackup, a standby)
    with psycopg.connect(f"{conninfo} user=replicator password={REPLICATOR_PASSWORD} replication=true"):
        pass
    with pytest.raises(psycopg.OperationalError, match=r"pg_hba.conf rejects replication"):
        psycopg.connect(f"{conninfo} user=postgres password=x replication=true")
    with pytest.raises(psycopg.OperationalError, match=r"password authentication failed"):
        psycopg.connect(f"{conninfo} user=replicator password=wrong")


def test_standby_streams_with_replica_conf(servers) -> None:
    primary, standby = servers["primary"], servers["standby"]
    assert standby.psql("SELECT pg_is_in_recovery()") == "t"
    retry(lambda: standby.psql("SELECT status FROM pg_stat_wal_receiver") == "streaming", timeout=60)
    assert primary.psql("SELECT application_name FROM pg_stat_replication") == "postgres-replica"
    primary.psql("CREATE TABLE replicated AS SELECT 1 AS x")
    retry(lambda: standby.psql("SELECT count(*) FROM replicated") == "1", timeout=60)


def test_standby_logs_plans_keyed_like_the_primarys(servers, rendered) -> None:
    """The reporting queries run on the replica: its auto_explain plans go to its own JSON log, where the
    replica's Promtail (the same logging/promtail.yaml) matches them, with the query_id that the
    replica's pg_stat_statements reports (the dashboard's replica panels link by it)."""
    import json
    import re

    import yaml
    from deploy_support import REPO

    standby = servers["standby"]
    canary = find(rendered["base"], "CronJob", "pgtool-auto-explain-canary")
    args = canary["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    sql = args[args.index("--command") + 1].replace("canary", "canary on the replica")
    standby.psql(sql)
    queryid = standby.psql(
        "SELECT queryid FROM pg_stat_statements WHERE query LIKE '%canary on the replica%' "
        "AND query NOT LIKE '%pg_stat_statements%'"
    )
    config = yaml.safe_load((REPO / "logging/promtail.yaml").read_text())
    (job,) = config["scrape_configs"]
    match = next(stage["match"] for stage in job["pipeline_stages"] if "match" in stage)
    line_filter = json.loads(re.search(r'\|~ ("(?:[^"\\]|\\.)*")', match["selector"]).group(1))

    def plans() -> list[dict]:
        lines = [
            line for path in servers["standby_logs"].glob("*.json") for line in path.read_text().splitlines()
        ]
        return [
            json.loads(line) for line in lines if re.search(line_filter, line) and "on the replica" in line
        ]

    (plan,) = retry(plans, timeout=30)
    assert str(plan["query_id"]) == queryid
    assert plan["backend_type"] == "client backend"
