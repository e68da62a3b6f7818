"""Benchmark: `pgtool archive-wal --repo s3://...` versus `barman-cloud-wal-archive`, per 16 MiB segment.

Both archive the same real WAL segments (from a throwaway LocalCluster: a table filled with random
md5 text, so the segments hold real heap-insert records) into ONE moto S3 server, in the same run,
each as archive_command runs it: a fresh process per segment. Every round archives the round's
segment once with every side, in a new order each round (forward on even rounds, reversed on odd),
each side into its own prefix of one bucket. Sides:

- put (curl): one raw unsigned `curl -T` PUT of the segment per process: moto's ceiling for a
  process-per-segment archiver;
- put (warm obstore): the same PUT from one warm Python process (no start-up): moto's ceiling itself;
- barman: `barman-cloud-wal-archive --endpoint-url URL s3://bench/barman srv SEGMENT` (no compression,
  CloudNativePG's default); barman --zstd: the same with `--zstd`;
- pgtool: `pgtool archive-wal SEGMENT NAME --repo s3://bench/pgtool` (zstd level 1, the default);
  pgtool none: `--compress none`;
- pgtool key: an encrypted repository, --repo-key-file holding 32 random bytes (keyed BLAKE2b);
- pgtool passphrase: an encrypted repository keyed by a text passphrase (Argon2id in every process);
- with --what-if, also pgtool with objformat's zstd level 1 instead of 3, patched in from outside src/.

The segments sit in a plain directory (no archive_status/), so `--ahead` has nothing to upload ahead:
this is the per-segment cost, every segment paying its own process and requests.

    bash scripts/setup-storage.sh && bash benchmarks/setup-barman.sh
    python benchmarks/archive_wal_s3.py --rounds 30 --markdown /tmp/run.md
    python benchmarks/archive_wal_s3.py --rounds 10 --profile 10   # + where pgtool's time goes

Prints the median wall time per segment of every side, the per-round ratio barman / pgtool (goal:
pgtool at least 2.5x faster) with a bootstrap 90% interval, and each side against moto's ceiling.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MOTO = ROOT / ".tools" / "moto-venv" / "bin" / "moto_server"
BARMAN = ROOT / ".tools" / "barman-venv" / "bin" / "barman-cloud-wal-archive"
BUCKET = "bench"
GOAL = 2.5  # barman / pgtool, per segment (issue 17)
SEGMENT_SIZE = 16 * 1024 * 1024

# Times one fresh `pgtool archive-wal --repo` in-process, split by phase: the imports, each request to
# the store, the encoding (zstd, checksum, encryption), the key derivation. Wraps pgtool's functions
# from the outside (nothing in src/ changes); prints one JSON object.
PROFILE = r"""
import json, sys, time
t0 = time.perf_counter()
from pgtool.wal import fastcli
t1 = time.perf_counter()
from pgtool.wal import repo_archive
t2 = time.perf_counter()
from pgtool.repo import keys, objformat, store
phases = {"import fastcli": t1 - t0, "import repo_archive (obstore, nacl, zstd)": t2 - t1}

def add(label, seconds):
    phases[label] = phases.get(label, 0.0) + seconds

def timed_gen(owner, attr, label, keyed):
    orig = getattr(owner, attr)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            yield from orig(*args, **kwargs)
        finally:
            add(label + (" " + str(args[1]) if keyed else ""), time.perf_counter() - start)
    setattr(owner, attr, wrapper)

def timed_fn(owner, attr, label, keyed):
    orig = getattr(owner, attr)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return orig(*args, **kwargs)
        finally:
            add(label + (" " + str(args[1]) if keyed else ""), time.perf_counter() - start)
    setattr(owner, attr, wrapper)

timed_gen(store.Store, "get_stream", "GET", True)
timed_fn(store.Store, "head", "HEAD", True)
timed_fn(store.Store, "create", "PUT If-None-Match", True)
timed_fn(store.Store, "__init__", "S3 client set-up", False)
timed_gen(objformat, "encode", "encode (compress, checksum, encrypt)", False)
timed_fn(keys, "unlock", "key derivation (unlock)", False)
t3 = time.perf_counter()
code = fastcli.main(sys.argv[1:])
phases["archive-wal total in-process"] = time.perf_counter() - t3
phases["import total"] = t2 - t0
print(json.dumps({"code": code, "phases": phases}))
"""

# One warm process that PUTs what it is told to and reports the request's time: moto's own ceiling.
WARM_PUT = r"""
import os, sys, time
from datetime import timedelta
import obstore
from obstore.store import S3Store
store = S3Store(sys.argv[1], config={"endpoint": os.environ["AWS_ENDPOINT_URL"], "region": "us-east-1",
    "virtual_hosted_style_request": False}, client_options={"allow_http": True})
for line in sys.stdin:
    path, key = line.split()
    start = time.perf_counter()
    with open(path, "rb") as f:
        obstore.put(store, key, f.read(), use_multipart=False)
    print(time.perf_counter() - start, flush=True)
"""


# `pgtool archive-wal` with pgtool.repo.objformat compressing at zstd level 1 instead of 3 (--what-if).
WHAT_IF_LEVEL1 = r"""
import sys, zstandard
from pgtool.repo import objformat
def _compressed(chunks):
    comp = zstandard.ZstdCompressor(level=1).compressobj()
    for chunk in chunks:
        out = comp.compress(chunk)
        if out:
            yield out
    yield comp.flush()
objformat._compressed = _compressed
from pgtool.cli.entry import main
sys.exit(main(sys.argv[1:]))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pgtool_script() -> str:
    script = Path(sys.executable).parent / "pgtool"
    if not script.exists():
        raise SystemExit("benchmark: the pgtool console script is not installed (pip install -e .)")
    return str(script)


def median_interval(ratios: list[float], draws: int = 4000) -> str:
    """A bootstrap 90% interval of the median (as in backup_verify.py)."""
    rng = random.Random(0)  # noqa: S311 - resampling, not secrets
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(draws))
    return f"{medians[draws // 20]:.2f}-{medians[draws - 1 - draws // 20]:.2f}x"


def checkout_commit() -> str:
    out = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return out.stdout.strip() or "unknown"


# -- the store ----------------------------------------------------------------------------------------


def start_moto(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    if not MOTO.exists():
        raise SystemExit(f"benchmark: no moto server at {MOTO}: run bash scripts/setup-storage.sh")
    port = free_port()
    log = open(work / "moto.log", "wb")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        [str(MOTO), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    f"benchmark: moto did not start: {(work / 'moto.log').read_text()[-500:]}"
                ) from None
            time.sleep(0.1)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("PUT", f"/{BUCKET}", body=b"", headers={"Content-Length": "0"})  # moto: path-style create
    resp = conn.getresponse()
    resp.read()
    if resp.status not in (200, 201):
        raise SystemExit(f"benchmark: creating bucket {BUCKET} failed: HTTP {resp.status}")
    return proc, port


def moto_version() -> str:
    out = subprocess.run(
        [str(MOTO.parent / "python"), "-c", "import moto; print(moto.__version__)"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() or "?"


# -- real WAL -----------------------------------------------------------------------------------------


def segno(name: str) -> int:
    """The segment number of a 16 MiB segment's name (256 segments per log id)."""
    return int(name[8:16], 16) * 256 + int(name[16:24], 16)


def make_segments(count: int, dest: Path) -> list[Path]:
    """`count` completed 16 MiB segments of real WAL, copied out of a throwaway cluster's pg_wal."""
    from pgtool.pg import binaries
    from pgtool.pg.cluster import LocalCluster

    pg = binaries.find()
    settings = {"wal_keep_size": f"{(count + 8) * 16}MB", "max_wal_size": f"{(count + 8) * 16}MB"}
    with LocalCluster(pg, settings=settings) as cluster:
        cluster.init().start()
        with cluster.connect() as conn:
            conn.autocommit = True
            conn.execute("CREATE TABLE public.fill (id bigint, payload text)")
            start = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()[0]
            # ~160k rows of ~70 bytes per segment, in batches so each transaction stays small.
            while True:
                current = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()[0]
                if segno(current) - segno(start) > count + 1:
                    break
                conn.execute(
                    "INSERT INTO public.fill SELECT g, md5(random()::text) || md5(random()::text) "
                    "FROM generate_series(1, 100000) g"
                )
            conn.execute("SELECT pg_switch_wal()")
            conn.execute("CHECKPOINT")
        wal_dir = cluster.data_dir / "pg_wal"
        names = sorted(p.name for p in wal_dir.iterdir() if len(p.name) == 24 and start < p.name < current)
        dest.mkdir(parents=True, exist_ok=True)
        out = []
        for name in names[:count]:
            shutil.copyfile(wal_dir / name, dest / name)
            out.append(dest / name)
    if len(out) < count:
        raise SystemExit(f"benchmark: only {len(out)} segments were generated, {count} wanted")
    return out


# -- the sides ----------------------------------------------------------------------------------------


def run(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(
            f"benchmark: {Path(argv[0]).name} failed ({proc.returncode}): {proc.stderr.strip()[-800:]}"
        )
    return elapsed


def build_sides(
    args: argparse.Namespace, work: Path, endpoint: str, env: dict[str, str]
) -> dict[str, object]:
    """Side label -> a function (segment path) -> seconds."""
    pgtool = pgtool_script()
    key_file, pass_file = work / "repo.key", work / "repo.pass"
    key_file.write_bytes(os.urandom(32))
    pass_file.write_text("correct horse battery staple, archived\n")
    for f in (key_file, pass_file):
        f.chmod(0o600)
    warm = subprocess.Popen(
        [sys.executable, "-c", WARM_PUT, BUCKET],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )

    def curl(seg: Path) -> float:
        # -H Expect: because moto (werkzeug) does not answer 100-continue; -f: an HTTP error fails the run.
        url = f"{endpoint}/{BUCKET}/curl/{seg.name}"
        return run(["curl", "-sSf", "-o", "/dev/null", "-H", "Expect:", "-T", str(seg), url], env)

    def warm_put(seg: Path) -> float:
        assert warm.stdin is not None and warm.stdout is not None
        warm.stdin.write(f"{seg} warm/{seg.name}\n")
        warm.stdin.flush()
        line = warm.stdout.readline()
        if not line:
            raise SystemExit("benchmark: the warm obstore process died")
        return float(line)

    def barman(prefix: str, *extra: str):
        return lambda seg: run(
            [str(BARMAN), "--endpoint-url", endpoint, *extra, f"s3://{BUCKET}/{prefix}", "srv", str(seg)], env
        )

    def tool(prefix: str, *extra: str):
        return lambda seg: run(
            [pgtool, "archive-wal", str(seg), seg.name, "--repo", f"s3://{BUCKET}/{prefix}", *extra], env
        )

    sides: dict[str, object] = {
        "put (curl)": curl,
        "put (warm obstore)": warm_put,
        "barman": barman("barman"),
        "barman --zstd": barman("barman-zstd", "--zstd"),
        "pgtool": tool("pgtool"),
        "pgtool --compress none": tool("pgtool-none", "--compress", "none"),
        "pgtool key (32 random bytes)": tool("pgtool-key", "--repo-key-file", str(key_file)),
        "pgtool passphrase (Argon2id)": tool("pgtool-pass", "--repo-key-file", str(pass_file)),
    }
    if args.what_if:
        # Not what pgtool ships: the suggested zstd level, patched in from outside src/ to see what it buys.
        def level1(seg: Path) -> float:
            argv = [sys.executable, "-c", WHAT_IF_LEVEL1, "archive-wal", str(seg), seg.name]
            return run([*argv, "--repo", f"s3://{BUCKET}/what-if-level1"], env)

        sides["what-if: pgtool, zstd level 1"] = level1
    sides["_warm"] = warm
    return sides


def profile(runs: int, segments: list[Path], endpoint: str, env: dict[str, str], work: Path) -> list[str]:
    """Where a fresh `pgtool archive-wal --repo` spends its time: -X importtime and per-request phases."""
    lines = []
    pass_file = work / "repo.pass"
    variants = (
        ("pgtool", []),
        ("pgtool --compress none", ["--compress", "none"]),
        ("pgtool passphrase", ["--repo-key-file", str(pass_file)]),
    )
    for label, extra in variants:
        totals: dict[str, list[float]] = {}
        walls = []
        for i in range(runs):
            seg = segments[i % len(segments)]
            prefix = f"profile-{label.replace(' ', '-')}-{i}"  # a fresh name each time: the real path
            argv = [
                sys.executable,
                "-c",
                PROFILE,
                "archive-wal",
                str(seg),
                seg.name,
                "--repo",
                f"s3://{BUCKET}/{prefix}",
            ]
            start = time.perf_counter()
            out = subprocess.run([*argv, *extra], capture_output=True, text=True, env=env)
            walls.append(time.perf_counter() - start)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            if result["code"] != 0:
                raise SystemExit(f"benchmark: profiled archive-wal failed: {out.stderr[-500:]}")
            for name, seconds in result["phases"].items():
                # requests are keyed by object; the segment's own name varies, so fold it
                key = name.replace(seg.name, "<segment>")
                totals.setdefault(key, []).append(seconds)
        lines.append(f"\n{label}: median of {runs} fresh processes, each into a new repository prefix")
        lines.append("| phase | median ms |")
        lines.append("|---|---|")
        lines.append(f"| whole process (wall, from outside) | {statistics.median(walls) * 1000:.0f} |")
        for name, values in totals.items():
            values += [0.0] * (runs - len(values))
            lines.append(f"| {name} | {statistics.median(values) * 1000:.1f} |")
    lines += zstd_levels(segments[0], env)
    # The heaviest imports, from -X importtime (cumulative microseconds), of the plain path.
    seg = segments[0]
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "from pgtool.wal import fastcli, repo_archive"],
        capture_output=True,
        text=True,
        env=env,
    )
    rows = []
    for line in out.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].rstrip()))
    rows.sort(reverse=True)
    lines.append(
        f"\n-X importtime of `from pgtool.wal import fastcli, repo_archive` ({seg.name} not needed):"
    )
    lines.append("| module (cumulative, nested ones included) | ms |")
    lines.append("|---|---|")
    for micros, name in rows[:15]:
        lines.append(f"| `{name.strip()}` | {micros / 1000:.1f} |")
    return lines


ZSTD_LEVELS = r"""
import sys, time, zstandard
data = open(sys.argv[1], "rb").read()
for level in (3, 1, -1):
    best = None
    for _ in range(3):
        start = time.perf_counter()
        out = zstandard.ZstdCompressor(level=level).compressobj()
        size = len(out.compress(data)) + len(out.flush())
        best = min(best or 1e9, time.perf_counter() - start)
    print(f"| zstd level {level} | {best * 1000:.0f} | {len(data) / size:.2f} |")
"""


def zstd_levels(seg: Path, env: dict[str, str]) -> list[str]:
    """What the compression in pgtool's encode costs per segment at other zstd levels (best of 3)."""
    out = subprocess.run(
        [sys.executable, "-c", ZSTD_LEVELS, str(seg)], capture_output=True, text=True, env=env
    )
    head = [f"\nzstd on {seg.name} in-process, one thread (pgtool.repo.objformat uses level 3):"]
    return [*head, "| level | ms per segment | ratio |", "|---|---|---|", *out.stdout.splitlines()]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=30, help="rounds = distinct real segments (default 30)")
    parser.add_argument("--segments-from", type=Path, help="a directory of 16 MiB segments to use instead")
    parser.add_argument(
        "--profile", type=int, default=0, help="then N profiled fresh pgtool runs per variant"
    )
    parser.add_argument("--markdown", type=Path, help="also write the tables here")
    parser.add_argument(
        "--what-if", action="store_true", help="add pgtool with zstd level 1 patched in (not shipped)"
    )
    args = parser.parse_args()
    if not BARMAN.exists():
        raise SystemExit(
            f"benchmark: no barman-cloud-wal-archive at {BARMAN}: run bash benchmarks/setup-barman.sh"
        )

    work = Path(tempfile.mkdtemp(prefix="pgtool-bench-s3-"))
    moto = None
    sides: dict[str, object] = {}
    try:
        if args.segments_from:
            segments = sorted(p for p in args.segments_from.iterdir() if p.stat().st_size == SEGMENT_SIZE)
            segments = segments[: args.rounds]
            source = f"{len(segments)} segments from {args.segments_from}"
        else:
            print(f"generating {args.rounds} real WAL segments ...", flush=True)
            segments = make_segments(args.rounds, work / "segments")
            source = (
                f"{len(segments)} real segments ({segments[0].name}..{segments[-1].name}) of a LocalCluster"
            )
        moto, port = start_moto(work)
        endpoint = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PGTOOL_"))}
        env.update(
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing-secret-key",  # noqa: S106 - moto's, not a secret
            AWS_REGION="us-east-1",
            AWS_DEFAULT_REGION="us-east-1",  # boto3 (barman) reads this one
            AWS_ENDPOINT_URL=endpoint,
            AWS_ALLOW_HTTP="true",
            PGTOOL_LOG_LEVEL="warning",
        )
        sides = build_sides(args, work, endpoint, env)
        labels = [k for k in sides if not k.startswith("_")]
        times: dict[str, list[float]] = {k: [] for k in labels}
        started = datetime.now(UTC)
        for rnd, seg in enumerate(segments):
            order = labels if rnd % 2 == 0 else labels[::-1]
            for label in order:
                times[label].append(sides[label](seg))  # type: ignore[operator]
            print(
                f"round {rnd + 1}/{len(segments)}: " + ", ".join(f"{k} {times[k][-1]:.2f}" for k in labels),
                flush=True,
            )
        lines = report(times, source, started)
        if args.profile:
            lines += profile(args.profile, segments, endpoint, env, work)
    finally:
        warm = sides.get("_warm")
        if isinstance(warm, subprocess.Popen):
            warm.kill()
        if moto is not None:
            os.killpg(moto.pid, signal.SIGKILL)
            moto.wait()
        shutil.rmtree(work, ignore_errors=True)
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0


def report(times: dict[str, list[float]], source: str, started: datetime) -> list[str]:
    ceiling = statistics.median(times["put (warm obstore)"])
    lines = [
        f"| run | {started:%Y-%m-%dT%H:%M}+00:00, commit {checkout_commit()} |",
        "|---|---|",
        f"| machine | {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}, "
        f"load average {os.getloadavg()[0]:.1f} at the end |",
        f"| segments | {source} |",
        f"| versions | Python {platform.python_version()}, moto {moto_version()}, {barman_version()} |",
        "",
        "| side | median s/segment | p90 s | segments/s (1/median) | median / warm PUT |",
        "|---|---|---|---|---|",
    ]
    for label, values in times.items():
        med = statistics.median(values)
        p90 = statistics.quantiles(values, n=10)[-1] if len(values) >= 2 else values[0]
        lines.append(f"| {label} | {med:.3f} | {p90:.3f} | {1 / med:.1f} | {med / ceiling:.1f}x |")
    lines += ["", "| per-round ratio | median | 90% interval | goal |", "|---|---|---|---|"]
    pairs = [
        ("barman / pgtool (both defaults)", "barman", "pgtool", f">= {GOAL}x"),
        (
            "barman / pgtool --compress none (neither compresses)",
            "barman",
            "pgtool --compress none",
            f">= {GOAL}x",
        ),
        ("barman --zstd / pgtool (both zstd)", "barman --zstd", "pgtool", f">= {GOAL}x"),
        ("barman / pgtool key", "barman", "pgtool key (32 random bytes)", ""),
        ("barman / pgtool passphrase", "barman", "pgtool passphrase (Argon2id)", ""),
        ("pgtool key / pgtool (cost of encryption)", "pgtool key (32 random bytes)", "pgtool", ""),
        ("pgtool passphrase / pgtool", "pgtool passphrase (Argon2id)", "pgtool", ""),
    ]
    if "what-if: pgtool, zstd level 1" in times:
        pairs.append(
            ("barman / what-if: pgtool, zstd level 1", "barman", "what-if: pgtool, zstd level 1", "")
        )
    for name, num, den, goal in pairs:
        ratios = [a / b for a, b in zip(times[num], times[den], strict=True)]
        lines.append(f"| {name} | {statistics.median(ratios):.2f}x | {median_interval(ratios)} | {goal} |")
    diffs = {
        label: statistics.median([a - b for a, b in zip(times[label], times["pgtool"], strict=True)])
        for label in ("pgtool key (32 random bytes)", "pgtool passphrase (Argon2id)")
    }
    lines.append("")
    lines.append(
        "Paired cost over plain pgtool, median per segment: "
        + "; ".join(f"{k}: {v * 1000:+.0f} ms" for k, v in diffs.items())
    )
    raw = "; ".join(f"{k}: " + ",".join(f"{v:.3f}" for v in vals) for k, vals in times.items())
    lines.append(f"\nRaw times (s): {raw}")
    return lines


def barman_version() -> str:
    out = subprocess.run([str(BARMAN), "--version"], capture_output=True, text=True)
    return (out.stdout + out.stderr).strip() or "barman ?"


if __name__ == "__main__":
    raise SystemExit(main())
