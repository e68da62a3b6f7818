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
4. pgtool's archive module (`pgtool archive-module`, built here for the server): a second backlog of
   the same size drains with archive_library = pgtool_archive and the same command as
   pgtool_archive.command (skipped with --no-module, or where no server headers and C compiler exist);
5. barman: `barman-cloud-wal-archive` (PyPI barman, benchmarks/setup-barman.sh) archives copies of the
   first --barman segments one after another, as its archive_command would, through the same link.

Each timed phase also records how busy the machine's CPUs were (/proc/stat) and the CPU seconds of the
S3 server and of this process (which runs the DelayLine) per segment: on a small machine the store
emulator and pgtool share the same cores, which decides what fraction of the store's capacity any
archiver that compresses can reach.

    bash scripts/setup-storage.sh && bash benchmarks/setup-barman.sh
    python benchmarks/wal_drain.py --segments 200 --markdown /tmp/drain.md

Goal: pgtool >= 80% of the store's capacity (for the bytes pgtool uploads) and >= 3x barman.
"""

from __future__ import annotations

import argparse
import contextlib
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
sys.path.insert(0, str(ROOT / "tests"))  # the tests' way to switch a server to the archive module
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _stats import as_installed  # noqa: E402
from archive_wal import REFERENCE  # noqa: E402
from archive_wal_s3 import BARMAN, BUCKET, barman_version, checkout_commit, moto_version, start_moto  # noqa: E402
from wal_fault_support import DelayLine, uploader_pids  # noqa: E402

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
    # No autovacuum: vacuuming the freshly filled table would run (and write WAL) during the drain that
    # follows, on the same cores, and more for a drain that starts right after its backlog was built.
    settings["autovacuum"] = "off"
    cluster = LocalCluster(binaries.find(), settings=settings)
    cluster.init().start()
    with cluster.connect() as conn:  # search_path pinned: the table's name is qualified
        conn.autocommit = True
        conn.execute("CREATE TABLE public.fill (id bigint, payload text)")
        while True:
            ready = len(ready_names(cluster))
            if ready >= count:
                break
            conn.execute(
                "INSERT INTO public.fill SELECT g, md5(random()::text) || md5(random()::text) "
                "FROM generate_series(1, 100000) g"
            )
        conn.execute("CHECKPOINT")
    return cluster, ready_names(cluster)


def ready_names(cluster: object) -> list[str]:
    status = Path(cluster.data_dir) / "pg_wal" / "archive_status"  # type: ignore[attr-defined]
    return sorted(p.name[:-6] for p in status.iterdir() if p.name.endswith(".ready") and len(p.name) == 30)


def machine_cpu() -> tuple[float, float]:
    """CPU seconds of the whole machine since boot: (busy, total); idle and I/O wait are not busy."""
    fields = [float(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(fields) - fields[3] - fields[4]) / tick, sum(fields) / tick


class Cpu:
    """CPU spent during a phase: the machine's busy share (/proc/stat), and CPU seconds of the S3 server
    and of this process (its DelayLine threads carry every byte to and from the server)."""

    def __init__(self, moto_pid: int) -> None:
        self.moto_pid = moto_pid
        self.busy = self.moto = self.here = 0.0

    def __enter__(self) -> Cpu:
        self._start = (machine_cpu(), process_cpu(self.moto_pid), time.process_time())
        return self

    def __exit__(self, *exc: object) -> None:
        (busy0, total0), moto0, here0 = self._start
        busy1, total1 = machine_cpu()
        self.busy = (busy1 - busy0) / max(total1 - total0, 1e-9)
        self.moto = process_cpu(self.moto_pid) - moto0
        self.here = time.process_time() - here0

    def row(self, label: str, count: int, uploader: float | None = None) -> str:
        ahead = f"{uploader / count * 1000:.0f}" if uploader is not None else ""
        return (
            f"| {label} | {self.busy * 100:.0f}% | {self.moto / count * 1000:.0f} | "
            f"{self.here / count * 1000:.0f} | {ahead} |"
        )


def drain(
    cluster: object, names: list[str], settings: dict[str, str], load: str | None = None
) -> tuple[float, float]:
    """(segments/s, CPU seconds of the uploader running ahead) from the reload that sets `settings`
    (ALTER SYSTEM; `load`: a library to LOAD first, so that its custom settings are known) until
    pg_stat_archiver counted the whole backlog. One session polls (a connection per poll would cost the
    machine a backend's start-up every 20 ms). Sessions pin the search_path, as pgtool's do."""
    pg_wal = Path(cluster.data_dir) / "pg_wal"  # type: ignore[attr-defined]
    with cluster.connect() as conn:  # type: ignore[attr-defined]
        conn.autocommit = True
        query = "SELECT archived_count FROM pg_stat_archiver"
        before = int(conn.execute(query).fetchone()[0])
        reconfigure(conn, settings, load)
        uploaders: dict[int, float] = {}
        t0 = time.perf_counter()
        conn.execute("SELECT pg_reload_conf()")
        while True:
            # pg_stat_archiver is a snapshot per transaction; autocommit: each poll sees a fresh one
            if int(conn.execute(query).fetchone()[0]) >= before + len(names):
                break
            for pid in uploader_pids(pg_wal):
                with contextlib.suppress(OSError):
                    uploaders[pid] = process_cpu(pid)
            time.sleep(0.02)
        elapsed = time.perf_counter() - t0
    for pid in uploader_pids(pg_wal):  # the uploader outlives the drain by its idle wait
        with contextlib.suppress(OSError):
            uploaders[pid] = process_cpu(pid)
    return len(names) / elapsed, sum(uploaders.values())


def load_module(cluster: object, library: Path) -> None:
    """Load pgtool's archive module with its command empty ("not configured", as archive_command is
    empty for the backlog), before any clock starts: a new archive_library restarts the archiver, which
    PostgreSQL 15's postmaster does only on its next loop (up to a minute on a quiet server; the tests'
    set_archive_module waits for it). The drain's reload then sets the command, which wakes that
    archiver at once, as it wakes archive_command's."""
    from pgharness import set_archive_module

    set_archive_module(cluster, library, "")


def reconfigure(conn: object, settings: dict[str, str], load: str | None) -> None:
    """ALTER SYSTEM each setting (after LOADing `load`, so that its custom settings are known); the
    caller reloads."""
    from psycopg import sql

    if load:
        conn.execute(sql.SQL("LOAD {}").format(sql.Literal(load)))  # type: ignore[attr-defined]
    for name, value in settings.items():
        statement = sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value))
        conn.execute(statement)  # type: ignore[attr-defined]


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def uploader_finished(log: Path) -> None:
    deadline = time.monotonic() + 30  # the uploader logs its line once idle (3 s)
    while "uploader finished" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.5)


def build_module(work: Path, include_dir: Path | None) -> Path | None:
    """pgtool's archive module for the benchmark's server, or None (with why) where it cannot be built."""
    from pgtool.errors import PgtoolError
    from pgtool.pg import binaries
    from pgtool.wal.module import build

    found = binaries.find()
    headers = include_dir
    default = ROOT / f".tools/postgresql-server-dev-{found.major}/usr/include/postgresql/{found.major}/server"
    if headers is None and default.is_dir():
        headers = default  # scripts/setup.sh unpacks PostgreSQL 15's headers there
    target = work / "module"
    target.mkdir()
    target.chmod(0o755)
    work.chmod(0o711)  # the server's user (postgres, when this runs as root) loads the library from here
    try:
        return build(found.path("pg_config"), output_dir=target, include_dir=headers).path
    except PgtoolError as exc:
        print(f"benchmark: no archive module side: {exc.one_line()}", flush=True)
        return None


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


def module_calls(log: Path, names: list[str]) -> list[str]:
    """How the module's drain went: segments the uploader confirmed to the module, and segments for which
    the module ran its command (one archive-wal process each, logged as such)."""
    import json

    backlog = set(names)
    calls = confirmed = refused = 0
    for text in log.read_text().splitlines():
        if '"command": "archive-wal"' not in text:
            continue
        record = json.loads(text[text.index("{") :])
        if record.get("event") == "uploader finished":
            confirmed += int(record.get("confirmed_for_module", 0))
            refused += int(record.get("not_confirmed_for_module", 0))
        elif record.get("wal_name") in backlog:
            calls += 1
    return [
        "",
        f"The archive module's drain: {confirmed} segments confirmed by the uploader over its socket, "
        f"{refused} requests not confirmed, {calls} archive-wal processes run by the module "
        "(pgtool_archive.command) for the backlog.",
    ]


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


def pgbackrest_stanza(
    stanza: Path, cluster: object, *, prefix: list[str] | None = None, env: dict[str, str] | None = None
) -> list[str]:
    """pgBackRest's argv (config, stanza) for a posix repository in `stanza`, created for `cluster`;
    `prefix` runs stanza-create as another user (the server's, when the repository is the server's)."""
    conf = stanza / "pgbackrest.conf"
    conf.write_text(
        PGBACKREST_CONF.format(
            work=stanza,
            pgdata=cluster.data_dir,  # type: ignore[attr-defined]
            socket=cluster.socket_dir,  # type: ignore[attr-defined]
            port=cluster.port,  # type: ignore[attr-defined]
        )
    )
    base = ["pgbackrest", f"--config={conf}", "--stanza=bench"]
    subprocess.run([*(prefix or []), *base, "stanza-create"], check=True, capture_output=True, env=env)
    return base


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
            base = pgbackrest_stanza(stanza, cluster, env=env)
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
    parser.add_argument("--no-module", action="store_true", help="skip the archive module's drain")
    parser.add_argument(
        "--include-dir", type=Path, help="the server's headers for the module (default: pg_config's)"
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
        module = None if args.no_module else build_module(work, args.include_dir)
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
        with Cpu(moto.pid) as cpu_packed:
            cap_packed = capacity(packed, args.concurrency, "raw-zstd")
        with Cpu(moto.pid) as cpu_raw:
            cap_raw = capacity(raw, args.concurrency, "raw")
        sample = len(raw)
        del raw, packed

        local = local_costs(cluster, names, work, args.local) if args.local else []
        print("pgtool drains the backlog (archive_command) ...", flush=True)
        command = f"{Path(sys.executable).parent / 'pgtool'} archive-wal %p %f --repo s3://{BUCKET}"
        with Cpu(moto.pid) as cpu_drain:
            drain_rate, drain_uploader = drain(cluster, names, {"archive_command": command + "/pgtool"})
        with cluster.connect() as conn:  # type: ignore[attr-defined]
            failed = conn.execute("SELECT failed_count FROM pg_stat_archiver").fetchone()[0]
        log = Path(cluster.log_file)  # type: ignore[attr-defined]
        uploader_finished(log)
        spent = where_time_goes(log, len(names) / drain_rate, names)
        cluster.cleanup()  # type: ignore[attr-defined]
        cluster = None

        module_rate = module_failed = None
        module_lines: list[str] = []
        if module is not None:
            print(f"building a second backlog of {args.segments} segments ...", flush=True)
            cluster, module_names = make_backlog(args.segments, env)
            print("pgtool drains it through its archive module ...", flush=True)
            settings = {"pgtool_archive.command": command + "/pgtool-module"}
            load_module(cluster, module)
            with Cpu(moto.pid) as cpu_module:
                module_rate, module_uploader = drain(cluster, module_names, settings, load=str(module))
            with cluster.connect() as conn:  # type: ignore[attr-defined]
                module_failed = conn.execute("SELECT failed_count FROM pg_stat_archiver").fetchone()[0]
            log = Path(cluster.log_file)  # type: ignore[attr-defined]
            uploader_finished(log)
            module_lines = module_calls(log, module_names)

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
            "| side | segments/s | pgtool archive_command / side | pgtool archive module / side |",
            "|---|---|---|---|",
        ]

        def row(label: str, rate: float) -> str:
            module_ratio = f"{module_rate / rate:.2f}" if module_rate else "not run"
            return f"| {label} | {rate:.2f} | {drain_rate / rate:.2f} | {module_ratio} |"

        lines += [
            row(
                f"store capacity: obstore PUTs of the zstd-1 bytes, {args.concurrency} in flight "
                f"({sample} segments)",
                cap_packed,
            ),
            row(f"store capacity: obstore PUTs of the raw 16 MiB, {args.concurrency} in flight", cap_raw),
            row(f"pgtool archive-wal --repo (--ahead 8), archive_command, {len(names)} segments", drain_rate),
        ]
        if module_rate:
            lines.append(
                row(f"pgtool archive module, same command, a second backlog of {len(names)}", module_rate)
            )
        if barman_rate:
            lines.append(
                row(f"barman-cloud-wal-archive, one after another, {args.barman} segments", barman_rate)
            )
        else:
            lines.append("| barman-cloud-wal-archive | not installed (bash benchmarks/setup-barman.sh) | | |")
        lines.append(
            f"\npg_stat_archiver.failed_count during the drains: {failed}"
            + (f" (archive_command), {module_failed} (module)" if module_rate else "")
        )
        lines += [
            "",
            "CPU during each timed phase (2 cores here run the S3 server, the DelayLine, PostgreSQL and "
            "pgtool alike):",
            "",
            "| phase | machine CPU busy | S3 server CPU ms / segment | DelayLine CPU ms / segment "
            "| pgtool's uploader CPU ms / segment |",
            "|---|---|---|---|---|",
            cpu_packed.row("store capacity, zstd-1 bytes", sample),
            cpu_raw.row("store capacity, raw bytes", sample),
            cpu_drain.row("pgtool, archive_command", len(names), drain_uploader),
        ]
        if module_rate:
            lines.append(cpu_module.row("pgtool, archive module", len(names), module_uploader))
        lines += spent
        lines += module_lines
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
