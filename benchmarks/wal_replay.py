"""Benchmark: replaying a WAL archive from S3 across a 20 ms round trip against local disk (issue 18,
"Recovery").

One run: a LocalCluster takes a base backup (`pgtool basebackup --dest`), uploaded into two
repositories, a local directory and a moto S3 bucket; then writes --segments segments of real WAL
(md5 text inserts), archived into both (`archive-wal --repo`, S3 reached directly: the archiving is
not what is timed). Each side then runs `pgtool recover --repo ... --pgdata ...` (to the end of the
archive; the base backup download is not timed) and starts the recovered server; the clock runs from
`pg_ctl start` until the server accepts writes (recovery reached the end of the archive and promoted):

- local: the local repository (restore-wal from disk; --prefetch defaults to 0 there), and the same
  with `--prefetch 8` added (what a local default of 8 would give);
- s3 --prefetch 8: the S3 repository through a DelayLine (tests/wal/wal_fault_support.py) adding 10 ms
  each way, restore_command as recover writes it (prefetch default 8);
- s3 --prefetch 0: the same with `--prefetch 0` added to restore_command (one segment per call).

    bash scripts/setup-storage.sh
    python benchmarks/wal_replay.py --segments 200 --markdown /tmp/replay.md

Goal: S3 over the link replays at >= 80% of the local-disk rate.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "wal"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _stats import as_installed, checkout_commit, emit  # noqa: E402
from archive_wal_s3 import BUCKET, moto_version, start_moto  # noqa: E402
from wal_fault_support import DelayLine  # noqa: E402

PGTOOL = str(Path(sys.executable).parent / "pgtool")


def pgtool(*args: str, env: dict[str, str]) -> None:
    proc = subprocess.run([PGTOOL, *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark: pgtool {args[0]} failed: {proc.stderr[-1500:]}")


def segno(name: str) -> int:
    return int(name[8:16], 16) * 256 + int(name[16:], 16)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--segments", type=int, default=200, help="archived segments to replay (default 200)")
    parser.add_argument("--delay", type=float, default=0.010, help="one-way delay in seconds (default 0.010)")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args()
    as_installed()  # each archive_command/restore_command call is a fresh interpreter

    from pgtool.pg import binaries
    from pgtool.pg.cluster import LocalCluster
    from pgtool.pg.privileges import make_server_dir
    from pgtool.physical import repo_catalog
    from pgtool.physical.base_catalog import list_base_backups
    from pgtool.recovery.recovery_config import control_minimums
    from pgtool.repo import open_repository

    work = Path(tempfile.mkdtemp(prefix="pgtool-bench-replay-", dir="/tmp"))
    work.chmod(0o777)
    moto = cluster = None
    lines: list[str] = []
    clusters = []
    try:
        moto, port = start_moto(work)
        line = DelayLine(port, delay=args.delay)
        creds = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
            "PGTOOL_LOG_LEVEL": "warning",
        }
        direct = {**os.environ, **creds, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
        linked = {**os.environ, **creds, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{line.port}"}
        local_url = str(make_server_dir(work / "repo", 0o777))
        s3_url = f"s3://{BUCKET}/replay"
        os.environ.update({k: v for k, v in direct.items() if k.startswith("AWS_")})
        command = (
            f"{PGTOOL} archive-wal %p %f --repo {s3_url} && {PGTOOL} archive-wal %p %f --repo {local_url}"
        )
        pg = binaries.find()
        settings = {"archive_mode": "on", "archive_command": command, "wal_level": "replica"}
        cluster = LocalCluster(pg, work / "primary", settings=settings)
        cluster.init().start()
        started = datetime.now(UTC)
        pgtool("basebackup", "--dsn", cluster.dsn(), "--dest", str(work / "base"), env=direct)
        newest = list_base_backups(work / "base")[-1]
        for url in (local_url, s3_url):
            repo_catalog.upload(open_repository(url, environ=direct, create=True), newest.path, newest.id)
        print(f"writing {args.segments} segments ...", flush=True)
        with cluster.connect(pin="off") as conn:
            conn.autocommit = True
            conn.execute("CREATE TABLE fill (id bigint, payload text)")
            first = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()[0]
            while True:
                now = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()[0]
                if segno(now) - segno(first) >= args.segments:
                    break
                conn.execute(
                    "INSERT INTO fill SELECT g, md5(random()::text) || md5(random()::text) "
                    "FROM generate_series(1, 100000) g"
                )
            last = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]
            rows = conn.execute("SELECT count(*) FROM fill").fetchone()[0]
        deadline = time.monotonic() + 1800
        while True:
            with cluster.connect(pin="off") as conn:
                done = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()[0]
            if done and done >= last:
                break
            if time.monotonic() > deadline:
                raise SystemExit("benchmark: archiving did not finish")
            time.sleep(0.5)
        cluster.stop()
        span = f"{first}..{last}"
        count = segno(last) - segno(first) + 1

        results = {}
        for label, url, env, extra in (
            ("local repository (disk)", local_url, direct, ""),
            ("local repository, --prefetch 8 (not the default)", local_url, direct, " --prefetch 8"),
            ("s3 over the link, --prefetch 8 (default)", s3_url, linked, ""),
            ("s3 over the link, --prefetch 0", s3_url, linked, " --prefetch 0"),
        ):
            print(f"replaying: {label} ...", flush=True)
            pgdata = work / f"r{len(results)}" / "data"
            pgtool("recover", "--repo", url, "--pgdata", str(pgdata), env=env)
            if extra:
                auto = pgdata / "postgresql.auto.conf"
                text = auto.read_text()
                marker = f"--repo {url}"
                assert marker in text, text
                auto.write_text(text.replace(marker, marker + extra))
            os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
            minimums = control_minimums(pg.path("pg_controldata"), pgdata)
            copy = LocalCluster(pg, pgdata.parent, data_dir=pgdata, settings=minimums)
            clusters.append(copy)
            t0 = time.perf_counter()
            copy.start(timeout=3600)
            copy.wait_until_ready(3600, primary=True)
            seconds = time.perf_counter() - t0
            with copy.connect(pin="off") as conn:
                got = conn.execute("SELECT count(*) FROM fill").fetchone()[0]
            if got != rows:
                raise SystemExit(f"benchmark: {label} recovered {got} rows, {rows} written")
            copy.cleanup()
            results[label] = seconds
        local = results["local repository (disk)"]
        lines = [
            f"| run | {started:%Y-%m-%dT%H:%M}+00:00, commit {checkout_commit()} |",
            "|---|---|",
            f"| machine | {platform.machine()}, {os.cpu_count()} cores, load average "
            f"{os.getloadavg()[0]:.1f} at the end |",
            f"| link | DelayLine, {args.delay * 1000:.0f} ms each way |",
            f"| archive | {count} segments ({span}) after the base backup, zstd-1 (pgtool's default) |",
            f"| versions | Python {platform.python_version()}, moto {moto_version()}, "
            f"PostgreSQL {pg.version} |",
            "",
            "| side | start to end of archive, s | segments/s | rate / local |",
            "|---|---|---|---|",
        ]
        for label, seconds in results.items():
            lines.append(f"| {label} | {seconds:.1f} | {count / seconds:.1f} | {local / seconds:.2f} |")
    finally:
        for c in clusters:
            c.cleanup()
        if cluster is not None:
            cluster.cleanup()
        if moto is not None:
            os.killpg(moto.pid, signal.SIGKILL)
            moto.wait()
        shutil.rmtree(work, ignore_errors=True)
    emit(lines, args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
