"""Every CronJob and hook Job of the manifests, run for real as close to the image as this machine allows.

No container engine here, so the next best thing to the image: pgtool's wheel (`pip wheel --no-deps`,
as the Dockerfile's build stage makes it) installed into a fresh venv with nothing else of this checkout,
and each container's exact args (and command) from the rendered manifests, with its environment
(ConfigMap pgtool-env plus the container's env, plus the image's ENV), run:
- as the server's uid and gid (the pods all run as 999), named `postgres` with the image's home and
  shell, as the pgtool image's Dockerfile creates it (initdb, which verify's drill runs, needs the
  entry): nss_wrapper reads a passwd file holding exactly that entry for the uid;
- with no HOME, from a read-only working directory;
- with PostgreSQL 18's client and server tools (the image ships postgresql-client-18; the PostgreSQL image,
  where verify --base runs, the server), against a real PostgreSQL 18 that archives through the
  manifests' own archive_command, run by the same installed pgtool.
Only the cluster address, the volume paths, the Pushgateway and the backup repository (prod's bucket
becomes one on moto's S3 server, the Secret's AWS variables moto's, the key file mounted from the test's
directory) are pointed at the test's. Each must exit 0, and each pgtool command must push a successful
run to a real Pushgateway."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from deploy_support import REPO, find, parse_exposition

from pgharness import binaries_for, rmtree, server_writable_dir, start_cluster
from pgtool.pg.binaries import reachable_by_server
from pgtool.pg.privileges import server_uid_gid

PASSWORDS = {  # what the Secrets hold; the test cluster trusts local connections, roles must LOGIN
    "postgres-superuser": "superuser-secret",
    "postgres-replicator": "replicator-secret",
    "pgbouncer-auth": "auth-secret",
    "grafana-reader": "reader-secret",
    "postgres-superuser-qa": "superuser-secret",  # QA's primary is the test's one cluster too
}
# In run order: the install hooks first (roles, then 18 months of partitions), backup before verify,
# basebackup before the base drill.
JOBS = [
    ("Job", "pgtool-bootstrap-extensions"),
    ("Job", "pgtool-bootstrap-qa-pooler"),
    ("Job", "pgtool-partitions-provision"),
    ("CronJob", "pgtool-backup"),
    ("CronJob", "pgtool-verify"),
    ("CronJob", "pgtool-basebackup"),
    ("CronJob", "pgtool-verify-base"),
    ("CronJob", "pgtool-partitions"),
    ("CronJob", "pgtool-refresh-mv"),
    ("CronJob", "pgtool-auto-explain-canary"),
    ("CronJob", "pgtool-status"),  # last: it reads what the jobs above stored and pushed
]
IMAGE_BINDIR = "/usr/lib/postgresql/18/bin"  # both images' PostgreSQL 18 binaries


def container_of(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]
    (container,) = spec["template"]["spec"]["containers"]
    return container


def image_env() -> dict[str, str]:
    """The ENV lines of the pgtool image's Dockerfile."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(item.split("=", 1) for item in shlex.split(line[4:]))
    return env


def install_wheel(workdir: Path) -> Path:
    """pgtool's wheel in a fresh venv (dependencies pinned to this venv's versions); its bin directory."""
    wheels, venv = workdir / "wheel", workdir / "venv"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(REPO)],
        check=True,
        capture_output=True,
    )
    freeze = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    constraints = workdir / "constraints.txt"
    constraints.write_text("\n".join(line for line in freeze.splitlines() if "==" in line) + "\n")
    base_python = getattr(sys, "_base_executable", None) or "python3"
    subprocess.run([base_python, "-m", "venv", str(venv)], check=True, capture_output=True)
    (wheel,) = wheels.glob("pgtool-*.whl")
    result = subprocess.run(
        [str(venv / "bin/pip"), "install", "-q", "-c", str(constraints), str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # nothing of this checkout leaks in: the installed package is the wheel's
    probe = subprocess.run(
        [str(venv / "bin/python"), "-c", "import pgtool; print(pgtool.__file__)"],
        capture_output=True,
        text=True,
        cwd="/",
        check=True,
    )
    assert probe.stdout.startswith(str(venv)), probe.stdout
    for root, dirs, files in os.walk(workdir):  # readable by the job's uid and the server
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | 0o444)
    return venv / "bin"


def repository_env(rendered: dict[str, Any], workdir: Path, s3_server: Any) -> dict[str, str]:
    """ConfigMap pgtool-repo as rendered, its bucket replaced by the test's, plus what Secret pgtool-repo-s3
    would hold (moto's credentials and endpoint)."""
    env = dict(find(rendered["overlays/prod"], "ConfigMap", "pgtool-repo")["data"])
    assert env["PGTOOL_REPO"].startswith("s3://")
    bucket = f"pgtool-cronjobs-{os.getpid()}"
    s3_server.make_bucket(bucket)
    env["PGTOOL_REPO"] = f"s3://{bucket}/db-prod"
    env.update({k: v for k, v in s3_server.env().items() if k.startswith("AWS_")})
    return env


@pytest.fixture(scope="module")
def environment(rendered, pushgateway_server, s3_server) -> Iterator[dict[str, Any]]:
    from pgtool import sample
    from pgtool.pg.conn import connect

    pushgateway_server.wipe()
    workdir = server_writable_dir("pgtool-cronjobs-")
    workdir.chmod(0o755)
    bindir = install_wheel(workdir)
    for name in ("backups", "wal-archive"):
        (workdir / name).mkdir()
        (workdir / name).chmod(0o777)
    readonly = workdir / "cwd"
    readonly.mkdir()
    readonly.chmod(0o555)
    # The repository key as Secret pgtool-repo-key mounts it: 32 random bytes, 0400, the pods' uid.
    key_dir = workdir / "repo-key"
    key_dir.mkdir()
    (key_dir / "repo.key").write_bytes(os.urandom(32))
    ids = server_uid_gid()
    if ids is not None:
        os.chown(key_dir / "repo.key", *ids)
    (key_dir / "repo.key").chmod(0o400)
    repo_env = repository_env(rendered, workdir, s3_server)
    repo_env["PGTOOL_REPO_KEY_FILE"] = str(key_dir / "repo.key")
    # The server runs prod's archive_command (repository.conf) with the installed pgtool, in the environment
    # the postgres container gets (the cluster harness takes no environment: the command exports it).
    conf = find(rendered["overlays/prod"], "ConfigMap", "postgres-config")["data"]["repository.conf"]
    archive_command = re.search(r"^archive_command = '(.*)'$", conf, re.MULTILINE).group(1)  # type: ignore[union-attr]
    assert "--repo" in archive_command
    exports = " ".join(f"{k}={v}" for k, v in repo_env.items())
    archive_command = f"export {exports}; " + archive_command.replace("pgtool ", f"{bindir}/pgtool ", 1)
    cluster = start_cluster(
        18,
        settings={
            "shared_preload_libraries": "pg_stat_statements,auto_explain",
            "wal_level": "replica",
            "archive_mode": "on",
            "archive_command": archive_command,
        },
    )
    try:
        with cluster.connect() as conn:
            conn.execute("CREATE DATABASE shop")
        with connect(cluster.dsn("shop")) as conn:
            sample.apply_schema(conn)
            sample.seed(conn, scale=0.01, seed=7)
        yield {
            "rendered": rendered,
            "cluster": cluster,
            "workdir": workdir,
            "bindir": bindir,
            "cwd": readonly,
            "pushgateway": pushgateway_server,
            "repo_env": repo_env,
        }
    finally:
        cluster.cleanup()
        rmtree(workdir)
        pushgateway_server.wipe()


def identity(workdir: Path) -> list[str]:
    """Run as the server's uid and gid, as the pods do (999 for both images, fsGroup 999), with the passwd
    entry the pgtool image has for it (Dockerfile: postgres, home /var/lib/postgresql, no login shell).
    Nothing when the tests do not run as root (then they run as an ordinary user already).

    The entry is the image's, not this machine's, through nss_wrapper (Debian's libnss-wrapper, what
    OpenShift-style images use for arbitrary uids): a preloaded NSS that reads our passwd file. Unlike a bind
    mount over /etc/passwd in a private mount namespace, it needs no mount privileges, so it also works in
    a chroot (whose root is not a mount point). The returned prefix ends in `env` with the wrapper's
    variables, so the caller's own `env -i ...` must come through `job_env`."""
    ids = server_uid_gid()
    if ids is None:
        return []
    uid, gid = ids
    passwd = workdir / "passwd"
    if not passwd.exists():
        lines = Path("/etc/passwd").read_text().splitlines()
        others = [f"{line}\n" for line in lines if line.split(":")[2] != str(uid)]
        image = f"postgres:x:{uid}:{gid}::/var/lib/postgresql:/usr/sbin/nologin\n"
        passwd.write_text("".join([*others, image]))
        passwd.chmod(0o644)
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]


def nss_hiding(workdir: Path) -> list[str]:
    """The environment assignments that make the preloaded nss_wrapper read `identity`'s passwd file."""
    if server_uid_gid() is None:
        return []
    found = sorted(Path("/usr/lib").glob("*/libnss_wrapper.so"))
    assert found, "libnss_wrapper.so is missing: run scripts/setup.sh (it installs Debian's libnss-wrapper)"
    return [
        f"LD_PRELOAD={found[0]}",
        f"NSS_WRAPPER_PASSWD={workdir / 'passwd'}",
        "NSS_WRAPPER_GROUP=/etc/group",
    ]


def local(arg: str, mounts: dict[str, str]) -> str:
    """A pod path under a mount, as the test's directory."""
    for path, replacement in mounts.items():
        if arg == path or arg.startswith(path + "/"):
            return replacement + arg[len(path) :]
    return arg


def run_job(environment: dict[str, Any], kind: str, name: str) -> subprocess.CompletedProcess[str]:
    rendered, cluster, workdir = environment["rendered"], environment["cluster"], environment["workdir"]
    pg18 = str(reachable_by_server(binaries_for(18)).bindir)
    obj = find(rendered["overlays/prod"], kind, name)
    container = container_of(obj)
    env = image_env()
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            name = re.sub(r"-[a-z0-9]{10}$", "", source["configMapRef"]["name"])
            data = find(rendered["overlays/prod"], "ConfigMap", name)["data"]
            env.update(environment["repo_env"] if name == "pgtool-repo" else data)
        elif source["secretRef"]["name"] == "pgtool-repo-s3":  # the Secret's AWS variables (test: moto's)
            env.update({k: v for k, v in environment["repo_env"].items() if k.startswith("AWS_")})
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            env[item["name"]] = PASSWORDS[item["valueFrom"]["secretKeyRef"]["name"]]
    assert env["PGTOOL_PG_BINDIR"] == IMAGE_BINDIR, name
    env.update(
        PGHOST=str(cluster.socket_dir),
        PGPORT=str(cluster.port),
        PGTOOL_PUSHGATEWAY_URL=environment["pushgateway"].url,
        PGTOOL_PG_BINDIR=pg18,
        PATH=f"{environment['bindir']}:{pg18}:/usr/bin:/bin",
    )
    assert "HOME" not in env
    mounts = {
        "/backups": str(workdir / "backups"),
        "/wal-archive": str(workdir / "wal-archive"),
        "/etc/pgtool-repo": str(workdir / "repo-key"),
    }
    if env.get("PGTOOL_REPO_KEY_FILE"):
        env["PGTOOL_REPO_KEY_FILE"] = local(env["PGTOOL_REPO_KEY_FILE"], mounts)

    argv = [*(container.get("command") or ["pgtool"]), *(local(a, mounts) for a in container["args"])]
    assignments = [f"{k}={v}" for k, v in env.items()]
    return subprocess.run(
        [*identity(workdir), "/usr/bin/env", "-i", *nss_hiding(workdir), *assignments, *argv],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=environment["cwd"],
    )


def test_every_job_is_covered(rendered) -> None:
    jobs = {
        (o["kind"], o["metadata"]["name"])
        for o in rendered["overlays/prod"]
        if o["kind"] in ("Job", "CronJob")
    }
    assert jobs == set(JOBS)


def test_the_job_identity_is_the_images(environment) -> None:
    """The conditions the jobs run under, checked once: the image's passwd entry, no HOME, a cwd it
    cannot write, the wheel's pgtool and PostgreSQL 18's psql first on PATH."""
    probe = (
        'id -u; getent passwd "$(id -u)" | cut -d: -f1,6 || echo no-passwd; echo "home=${HOME:-}"; '
        "touch x 2>/dev/null && echo writable || echo read-only; command -v pgtool; psql --version"
    )
    prefix = identity(environment["workdir"])
    result = subprocess.run(
        [
            *prefix,
            "/usr/bin/env",
            "-i",
            *nss_hiding(environment["workdir"]),
            f"PATH={environment['bindir']}:{reachable_by_server(binaries_for(18)).bindir}:/usr/bin:/bin",
            "/bin/sh",
            "-c",
            probe,
        ],
        capture_output=True,
        text=True,
        cwd=environment["cwd"],
    )
    lines = result.stdout.split("\n")
    if prefix:
        assert lines[0] == str(server_uid_gid()[0])  # type: ignore[index]
        assert lines[1] == "postgres:/var/lib/postgresql"  # the image's entry, whatever this machine has
    assert "home=" in lines and "read-only" in lines
    assert f"{environment['bindir']}/pgtool" in lines
    assert "psql (PostgreSQL) 18." in result.stdout


@pytest.mark.parametrize(("kind", "name"), JOBS, ids=[name for _, name in JOBS])
def test_job_runs(environment: dict[str, Any], kind: str, name: str) -> None:
    result = run_job(environment, kind, name)
    assert result.returncode == 0, f"{name}: {result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    args = container_of(find(environment["rendered"]["overlays/prod"], kind, name))["args"]
    if args[0] in ("--no-psqlrc", "bootstrap-extensions"):  # a psql canary; bootstrap pushes nothing
        return
    job = "pgtool-verify-base" if "--base" in args else f"pgtool-{args[0]}"
    pushed = parse_exposition(environment["pushgateway"].metrics_text())
    runs = {lab["job"]: v for lab, v in pushed["pgtool_last_run_success"]}
    assert runs[job] == 1.0


def test_jobs_did_their_work(environment: dict[str, Any]) -> None:
    """After the runs above: WAL archived, dumps and a base backup, all in prod's repository (encrypted with
    the key file) and nothing on the local volumes; 18 months of partitions, a plan logged by the canary."""
    from pgtool.repo import open_repository

    workdir, cluster, env = environment["workdir"], environment["cluster"], environment["repo_env"]
    repo = open_repository(env["PGTOOL_REPO"], key_file=env["PGTOOL_REPO_KEY_FILE"], environ=env)
    names = [o.name for o in repo.list("")]
    assert [n for n in names if re.fullmatch(r"wal/[0-9A-F]{8}/[0-9A-F]{24}", n)]
    assert [n for n in names if n.startswith("dumps/shop/")]
    assert [n for n in names if n.startswith("base/")]
    assert not list((workdir / "wal-archive").iterdir()) and not list((workdir / "backups").iterdir())
    with cluster.connect("shop") as conn:
        partitions = conn.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'public.orders'::regclass"
        ).fetchone()[0]
        assert partitions >= 19  # the current month, 17 ahead, and the DEFAULT
    with cluster.connect() as conn:
        canary = conn.execute(
            "SELECT calls FROM pg_stat_statements WHERE query LIKE '%auto_explain canary%'"
        ).fetchall()
    assert canary and canary[0][0] >= 1
