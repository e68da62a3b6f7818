"""Benchmark: draining an archive backlog into S3 across a 20 ms round trip (issue 18, "Archive drain rate").

One run, one moto S3 server, one link: a DelayLine proxy (tests/wal/wal_fault_support.py) adding 10 ms
each way to every byte, pipelined (this kernel has no netem). Then:

1. backlog: a LocalCluster with archive_mode on and archive_command empty writes real WAL (md5 text
   inserts) until at least --segments segments wait in pg_wal with their .ready files;
2. store capacity: one warm process PUTs the same segments' bytes through the same link with obstore
   directly, --concurrency at a time (default 9: the asked segment plus --ahead's 8), both as pgtool
   uploads them (zstd level 1, compressed beforehand, outside the timing) and raw (16 MiB each);
3. pgtool: archive_command is set to `pgtool archive-wal %p %f --repo s3://bench/pgtool` (--ahead
   default, 8) and reloaded; the clock runs until pg_stat_archiver counted every segment of the backlog;
4. barman: `barman-cloud-wal-archive` (PyPI barman, benchmarks/setup-barman.sh) archives copies of the
   first --barman segments one after another, as its archive_command would, through the same link.

    bash scripts/setup-storage.sh && bash benchmarks/setup-barman.sh
    python benchmarks/wal_drain.py --segments 200 --markdown /tmp/drain.md

Goal: pgtool >= 80% of the store's capacity (for the bytes pgtool uploads) and >= 3x barman.
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
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "wal"))  # the DelayLine the fault tests use
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _stats import as_installed  # noqa: E402
from archive_wal import REFERENCE  # noqa: E402
from archive_wal_s3 import BARMAN, BUCKET, barman_version, checkout_commit, moto_version, start_moto  # noqa: E402
from wal_fault_support import DelayLine  # noqa: E402

SEG = 16 * 1024 * 1024


def make_backlog(count: int, env: dict[str, str]) -> tuple[object, list[str]]:
    """A started cluster holding `count`+ completed, unarchived segments (archive_command empty)."""
    from pgtool.pg import binaries
    from pgtool.pg.cluster import LocalCluster

    os.environ.update(env)  # the server (and its archive_command) inherits the store's environment
    # archive_command empty (not the shell command `''`): the archiver waits, "not configured", and the
    # reload that sets pgtool's command wakes it at once. A command the shell cannot find (exit 127)
    # makes the archiver exit FATAL, and the postmaster restarts it at most every 10 s: until
    # 2026-12-06 11:00 that wait (up to 10 s) was inside the drain's clock.
    settings = {"archive_mode": "on", "archive_command": "", "wal_level": "replica", "max_wal_size": "64MB"}
    cluster = LocalCluster(binaries.find(), settings=settings)
    cluster.init().start()
    with cluster.connect(pin="off") as conn:
        conn.autocommit = True
        conn.execute("CREATE TABLE fill (id bigint, payload text)")
        while True:
            ready = len(ready_names(cluster))
            if ready >= count:
                break
            conn.execute(
                "INSERT INTO fill SELECT g, md5(random()::text) || md5(random()::text) "
                "FROM generate_series(1, 100000) g"
            )
        conn.execute("CHECKPOINT")
    return cluster, ready_names(cluster)


def ready_names(cluster: object) -> list[str]:
    status = Path(cluster.data_dir) / "pg_wal" / "archive_status"  # type: ignore[attr-defined]
    return sorted(p.name[:-6] for p in status.iterdir() if p.name.endswith(".ready") and len(p.name) == 30)


def archived_count(cluster: object) -> int:
    with cluster.connect(pin="off") as conn:  # type: ignore[attr-defined]
        return int(conn.execute("SELECT archived_count FROM pg_stat_archiver").fetchone()[0])


def capacity(payloads: list[bytes], concurrency: int, prefix: str) -> float:
    """Segments/s of plain obstore PUTs of `payloads` through the link, `concurrency` at a time."""
    import obstore
    from obstore.store import S3Store

    store = S3Store(
        BUCKET,
        config={
            "endpoint": os.environ["AWS_ENDPOINT_URL"],
            "region": "us-east-1",
            "virtual_hosted_style_request": False,
        },
        client_options={"allow_http": True},
    )
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda i: obstore.put(store, f"{prefix}/{i}", payloads[i]), range(len(payloads))))
    return len(payloads) / (time.perf_counter() - started)


def where_time_goes(log: Path, wall: float, names: list[str]) -> list[str]:
    """The drain's archive-wal calls from the server log (one JSON line each): how many of each kind,
    their in-process time (from pgtool's own clock, after the interpreter started), and the rest of
    the wall time (interpreter start-up, PostgreSQL's fork and shell, the archiver's own loop). Only
    the backlog's segments (`names`) count: the log also holds the calls for the WAL written after the
    clock stopped (autovacuum of the fill table), which the uploader's line includes."""
    backlog = set(names)
    import json
    import statistics

    kinds: dict[str, list[float]] = {}
    uploaders = []
    for text in log.read_text().splitlines():
        if '"command": "archive-wal"' not in text:
            continue
        record = json.loads(text[text.index("{") :])
        if record.get("event") == "uploader finished":  # the detached uploader's own line
            uploaders.append(record)
            continue
        if record.get("wal_name") not in backlog:
            continue
        label = record.get("result", record.get("outcome", "?"))
        if record.get("waited_s", 0) >= 0.01:
            label += " after waiting for its upload"
        if record.get("uploader"):
            label += " (and started the uploader)"
        kinds.setdefault(label, []).append(float(record["duration_s"]))
    inside = sum(sum(v) for v in kinds.values())
    calls = sum(len(v) for v in kinds.values())
    lines = ["", "Where pgtool's drain time goes (server log, one line per archive-wal call):", ""]
    lines += ["| call | count | median s in-process | total s |", "|---|---|---|---|"]
    for label, values in sorted(kinds.items(), key=lambda kv: -sum(kv[1])):
        lines.append(f"| {label} | {len(values)} | {statistics.median(values):.3f} | {sum(values):.1f} |")
    outside = wall - inside
    lines.append(
        f"| outside pgtool's clock: interpreter start, fork + shell, archiver loop | {calls} | "
        f"{outside / max(calls, 1):.3f} (mean) | {outside:.1f} |"
    )
    lines.append(f"| wall time of the drain | | | {wall:.1f} |")
    for record in uploaders:
        lines.append(
            f"| uploader running ahead (detached, beside the calls): {record.get('uploaded')} "
            f"uploaded{', ' + str(record['warning']) if record.get('warning') else ''} | 1 | | "
            f"{float(record['duration_s']):.1f} |"
        )
    return lines


def zstd1(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=1).compress(data)


PGBACKREST_CONF = """[global]
repo1-path={work}/pgbr-repo
lock-path={work}/pgbr-lock
spool-path={work}/pgbr-spool
log-path={work}/pgbr-log
log-level-console=warn
log-level-file=off

[bench]
pg1-path={pgdata}
pg1-socket-path={socket}
pg1-port={port}
pg1-user=postgres
"""


def local_costs(cluster: object, names: list[str], work: Path, count: int) -> list[str]:
    """Per-segment wall time of a fresh process archiving into local disk, sides rotated per segment:
    pgtool --repo DIR (zstd-1 default, and --compress none), a durable stdlib copy (python3 -S, as in
    benchmarks/archive_wal.py), and pgBackRest's archive-push (default gz, zst level 1, none) if found."""
    import statistics

    pg_wal = Path(cluster.data_dir) / "pg_wal"  # type: ignore[attr-defined]
    segs = work / "local-src"
    segs.mkdir()
    for n in names[:count]:
        shutil.copyfile(pg_wal / n, segs / n)
    pgtool = str(Path(sys.executable).parent / "pgtool")
    (work / "ref.py").write_text(REFERENCE)
    (work / "ref").mkdir()
    env = {**os.environ, "PGTOOL_LOG_LEVEL": "warning"}
    sides: dict[str, list[str]] = {
        "pgtool --repo DIR (zstd-1, default)": [
            pgtool,
            "archive-wal",
            "{seg}",
            "{name}",
            "--repo",
            f"{work}/repo-z",
        ],
        "pgtool --repo DIR --compress none": [
            pgtool,
            "archive-wal",
            "{seg}",
            "{name}",
            "--repo",
            f"{work}/repo-n",
            "--compress",
            "none",
        ],
        "durable stdlib copy (python3 -S)": [
            "/usr/bin/python3",
            "-S",
            str(work / "ref.py"),
            "{seg}",
            "{name}",
            f"{work}/ref",
        ],
    }
    pgbackrest = shutil.which("pgbackrest")
    if pgbackrest:
        for label, extra in (
            ("gz (default)", []),
            ("zst-1", ["--compress-type=zst", "--compress-level=1"]),
            ("none", ["--compress-type=none"]),
        ):
            stanza = work / f"pgbr-{len(sides)}"
            stanza.mkdir()
            conf = stanza / "pgbackrest.conf"
            conf.write_text(
                PGBACKREST_CONF.format(
                    work=stanza,
                    pgdata=cluster.data_dir,
                    socket=cluster.socket_dir,
                    port=cluster.port,  # type: ignore[attr-defined]
                )
            )
            base = [pgbackrest, f"--config={conf}", "--stanza=bench"]
            subprocess.run([*base, "stanza-create"], check=True, capture_output=True, env=env)
            sides[f"pgbackrest archive-push {label}"] = [*base, *extra, "archive-push", "{seg}"]
    times: dict[str, list[float]] = {k: [] for k in sides}
    for i, seg in enumerate(sorted(segs.iterdir())):
        order = list(sides) if i % 2 == 0 else list(sides)[::-1]
        for label in order:
            argv = [a.replace("{seg}", str(seg)).replace("{name}", seg.name) for a in sides[label]]
            t = time.perf_counter()
            proc = subprocess.run(argv, capture_output=True, text=True, env=env)
            times[label].append(time.perf_counter() - t)
            if proc.returncode != 0:
                raise SystemExit(f"benchmark: {label} failed: {proc.stderr[-800:]}")
    shutil.rmtree(segs, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    lines = [
        "",
        f"Local archiving, {count} real segments, a fresh process per segment, sides alternating:",
        "",
        "| side | median ms/segment | pgtool (zstd-1) / side | pgtool --compress none / side |",
        "|---|---|---|---|",
    ]
    for label, m in med.items():
        z = med["pgtool --repo DIR (zstd-1, default)"] / m
        n = med["pgtool --repo DIR --compress none"] / m
        lines.append(f"| {label} | {m * 1000:.0f} | {z:.2f} | {n:.2f} |")
    if not pgbackrest:
        lines.append("| pgbackrest archive-push | not installed (bash benchmarks/setup-pgbackrest.sh) | | |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--segments", type=int, default=200, help="backlog size (default 200)")
    parser.add_argument("--delay", type=float, default=0.010, help="one-way delay in seconds (default 0.010)")
    parser.add_argument("--concurrency", type=int, default=9, help="raw PUTs in flight (default 9)")
    parser.add_argument("--barman", type=int, default=20, help="segments barman archives (default 20)")
    parser.add_argument(
        "--local", type=int, default=20, help="segments for the local comparison (default 20)"
    )
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args()
    as_installed()  # each archive_command/restore_command call is a fresh interpreter

    work = Path(tempfile.mkdtemp(prefix="pgtool-bench-drain-"))
    moto = cluster = None
    lines: list[str] = []
    try:
        moto, port = start_moto(work)
        line = DelayLine(port, delay=args.delay)
        env = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{line.port}",
            "AWS_ALLOW_HTTP": "true",
        }
        started = datetime.now(UTC)
        print(f"building a backlog of {args.segments} segments ...", flush=True)
        cluster, names = make_backlog(args.segments, env)
        pg_wal = Path(cluster.data_dir) / "pg_wal"  # type: ignore[attr-defined]
        raw = [(pg_wal / n).read_bytes() for n in names[: min(len(names), 60)]]
        barman_dir = work / "barman"
        barman_dir.mkdir()
        for n in names[: args.barman]:
            shutil.copyfile(pg_wal / n, barman_dir / n)
        packed = [zstd1(b) for b in raw]
        ratio = sum(map(len, raw)) / sum(map(len, packed))
        print(f"{len(names)} segments ready; zstd-1 ratio {ratio:.2f}; measuring the store ...", flush=True)
        cap_packed = capacity(packed, args.concurrency, "raw-zstd")
        cap_raw = capacity(raw, args.concurrency, "raw")
        del raw, packed

        local = local_costs(cluster, names, work, args.local) if args.local else []
        print("pgtool drains the backlog ...", flush=True)
        before = archived_count(cluster)
        pgtool = Path(sys.executable).parent / "pgtool"
        with cluster.connect(pin="off") as conn:  # type: ignore[attr-defined]
            conn.autocommit = True
            conn.execute(
                f"ALTER SYSTEM SET archive_command = '{pgtool} archive-wal %p %f --repo s3://{BUCKET}/pgtool'"
            )
            t0 = time.perf_counter()
            conn.execute("SELECT pg_reload_conf()")
        while archived_count(cluster) < before + len(names):
            time.sleep(0.02)
        drain = len(names) / (time.perf_counter() - t0)
        wall = len(names) / drain
        with cluster.connect(pin="off") as conn:  # type: ignore[attr-defined]
            failed = conn.execute("SELECT failed_count FROM pg_stat_archiver").fetchone()[0]
        log = Path(cluster.log_file)  # type: ignore[attr-defined]
        deadline = time.monotonic() + 30  # the uploader logs its line once idle (3 s)
        while "uploader finished" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.5)
        spent = where_time_goes(log, wall, names)

        barman_rate = None
        if BARMAN.exists():
            print("barman archives its copies ...", flush=True)
            t1 = time.perf_counter()
            for seg in sorted(barman_dir.iterdir()):
                argv = [
                    str(BARMAN),
                    "--endpoint-url",
                    env["AWS_ENDPOINT_URL"],
                    f"s3://{BUCKET}/barman",
                    "srv",
                ]
                subprocess.run([*argv, str(seg)], check=True, env={**os.environ, **env}, capture_output=True)
            barman_rate = args.barman / (time.perf_counter() - t1)

        lines = [
            f"| run | {started:%Y-%m-%dT%H:%M}+00:00, commit {checkout_commit()} |",
            "|---|---|",
            f"| machine | {platform.machine()}, {os.cpu_count()} cores, load average "
            f"{os.getloadavg()[0]:.1f} at the end |",
            f"| link | DelayLine, {args.delay * 1000:.0f} ms each way "
            f"({args.delay * 2000:.0f} ms round trip) |",
            f"| backlog | {len(names)} real segments ({names[0]}..{names[-1]}), zstd-1 ratio {ratio:.2f} |",
            f"| versions | Python {platform.python_version()}, moto {moto_version()}"
            + (f", {barman_version()}" if barman_rate else "")
            + " |",
            "",
            "| side | segments/s | pgtool / side |",
            "|---|---|---|",
            f"| store capacity: obstore PUTs of the zstd-1 bytes, {args.concurrency} in flight (60 segments) "
            f"| {cap_packed:.1f} | {drain / cap_packed:.2f} |",
            f"| store capacity: obstore PUTs of the raw 16 MiB, {args.concurrency} in flight (60 segments) "
            f"| {cap_raw:.1f} | {drain / cap_raw:.2f} |",
            f"| pgtool archive-wal --repo (--ahead 8), archive_command, {len(names)} segments "
            f"| {drain:.1f} | 1.00 |",
        ]
        if barman_rate:
            lines.append(
                f"| barman-cloud-wal-archive, one after another, {args.barman} segments "
                f"| {barman_rate:.2f} | {drain / barman_rate:.1f} |"
            )
        else:
            lines.append("| barman-cloud-wal-archive | not installed (bash benchmarks/setup-barman.sh) | |")
        lines.append(f"\npg_stat_archiver.failed_count during the drain: {failed}")
        lines += spent
        lines += local
    finally:
        if cluster is not None:
            cluster.cleanup()  # type: ignore[attr-defined]
        if moto is not None:
            os.killpg(moto.pid, signal.SIGKILL)
            moto.wait()
        shutil.rmtree(work, ignore_errors=True)
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
