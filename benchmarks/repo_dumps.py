"""Benchmark: `pgtool backup` + `pgtool verify` through S3 (and a local repository) against local disk.

Builds a database of at least --min-mb (default 1024) MB with backup_verify.py's builder on a throwaway
LocalCluster, starts moto's S3 server on this machine (tests/repo_servers.py), and times, side by
side in one run, four sides per round, the order reversed every other round (the machine is shared:
a noisy neighbour then hurts every side alike, and each round's ratios compare runs under one load):

- (a) disk: `pgtool backup --dest DIR` + `pgtool verify --backup-dir DIR`;
- (b) s3: the same with `--repo s3://bench/<side>-<round>` on moto;
- (c) repo-local: with a local repository, `--repo DIR`;
- (d) s3-enc: S3 encrypted, `--repo-key-file` holding 32 random bytes.

Each run starts settled (a CHECKPOINT and a sync, untimed). Each round also times moto's raw
throughput for the same bytes: one multipart PUT (8 MiB parts, like pgtool's) and one streamed GET
of an object as large as that round's stored S3 dump, from this warm process with obstore: how much of
(b) is the emulator. Reports per-round ratios (median, bootstrap 90% interval) of (b)/(a), (c)/(a)
and (d)/(a) for backup, verify and their sum. Goal (issue 17): (b)/(a) <= 1.2x.

    bash scripts/setup-storage.sh
    python benchmarks/repo_dumps.py --rounds 6 --min-mb 1024 --budget-min 20 --profile --markdown /tmp/run.md
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import obstore
from _stats import checkout_commit, emit, median_interval, paired_ratios, seconds
from backup_verify import build_database, pgtool_argv, run_logged, settle
from obstore.store import S3Store

from pgtool.pg import binaries
from pgtool.pg.cluster import LocalCluster

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from repo_servers import start_server  # noqa: E402 - the tests' moto launcher, not a copy

GOAL = 1.2  # (b) s3 / (a) disk, backup + verify (issue 17)
BUCKET = "bench"
SIDES = ("disk", "s3", "repo-local", "s3-enc")
PART = 8 * 1024 * 1024  # pgtool.repo.store.MULTIPART_CHUNK


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def event(events: list[dict[str, object]], name: str, key: str) -> float:
    return float(next((e[key] for e in events if e.get("event") == name and key in e), float("nan")))  # type: ignore[arg-type]


def s3_store(env: dict[str, str]) -> S3Store:
    return S3Store(
        BUCKET,
        config={
            "endpoint": env["AWS_ENDPOINT_URL"],
            "region": "us-east-1",
            "access_key_id": env["AWS_ACCESS_KEY_ID"],
            "secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
            "virtual_hosted_style_request": False,
        },
        client_options={"allow_http": True},
    )


def drop_prefix(store: S3Store, prefix: str) -> int:
    """Delete everything under `prefix` (moto keeps objects in memory); the bytes it held."""
    held = 0
    for batch in obstore.list(store, prefix=prefix):
        held += sum(o["size"] for o in batch)
        obstore.delete(store, [o["path"] for o in batch])
    return held


def raw_put_get(store: S3Store, size: int) -> tuple[float, float]:
    """One multipart PUT (8 MiB parts) and one streamed GET of `size` random-ish bytes: moto's ceiling."""
    block = os.urandom(PART)

    def parts() -> Iterator[bytes]:
        left = size
        while left > 0:
            yield block[: min(PART, left)]
            left -= PART

    start = time.perf_counter()
    obstore.put(store, "raw/object", parts(), chunk_size=PART)
    put_s = time.perf_counter() - start
    start = time.perf_counter()
    got = sum(len(c) for c in obstore.get(store, "raw/object").stream(min_chunk_size=1024 * 1024))
    get_s = time.perf_counter() - start
    assert got == size, (got, size)
    obstore.delete(store, "raw/object")
    return put_s, get_s


def profile(cluster: LocalCluster, pg: binaries.PgBinaries, work: Path) -> list[str]:
    """Untimed diagnostics after the rounds: where a backup + verify through S3 spends its time.

    pg_dump alone (custom format into /dev/null), then over that same dump, in this process, each
    stage pgtool's repository adds: sha256 (the manifest's), objformat.encode (zstd level 1 +
    checksum; with a key, + encryption) and objformat.decode, each drained without any I/O."""
    from pgtool.repo import objformat

    dump = work / "profile.dump"
    out: dict[str, float] = {}
    settle(cluster)
    start = time.perf_counter()
    with open(os.devnull, "wb") as sink:
        subprocess.run(
            [pg.path("pg_dump"), "--format=custom", "-d", cluster.dsn("bench")], check=True, stdout=sink
        )
    out["pg_dump --format=custom > /dev/null"] = time.perf_counter() - start
    subprocess.run(
        [pg.path("pg_dump"), "--format=custom", "-f", str(dump), "-d", cluster.dsn("bench")], check=True
    )
    data = dump.read_bytes()
    blocks = [data[i : i + 1024 * 1024] for i in range(0, len(data), 1024 * 1024)]
    start = time.perf_counter()
    digest = hashlib.sha256()
    for b in blocks:
        digest.update(b)
    out["sha256 of the dump"] = time.perf_counter() - start
    key = secrets.token_bytes(32)
    stored: dict[str, bytes] = {}
    for label, k in (("plain", None), ("encrypted", key)):
        start = time.perf_counter()
        stored[label] = b"".join(objformat.encode("dumps/x/dump", iter(blocks), key=k))
        out[f"objformat.encode, {label} (zstd 1 + checksum)"] = time.perf_counter() - start
    start = time.perf_counter()
    b"".join(objformat.encode("dumps/x/dump", iter(blocks), key=None, compress=False))
    out["objformat.encode, plain, no compression"] = time.perf_counter() - start
    for label, k in (("plain", None), ("encrypted", key)):
        piece = stored[label]
        start = time.perf_counter()
        for _ in objformat.decode(
            "dumps/x/dump",
            (piece[i : i + 1024 * 1024] for i in range(0, len(piece), 1024 * 1024)),
            key=k,
            where="bench",
        ):
            pass
        out[f"objformat.decode, {label}"] = time.perf_counter() - start
    mb = len(data) / 2**20
    lines = [
        "",
        f"Untimed diagnostics after the rounds (one run each, dump {mb:.0f} MB,"
        f" stored {len(stored['plain']) / 2**20:.0f} MB plain):",
        "",
        "| stage | s | MB/s |",
        "|---|---|---|",
    ]
    lines += [f"| {k} | {v:.2f} | {mb / v:.0f} |" for k, v in out.items()]
    dump.unlink()
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--min-mb", type=int, default=1024)
    parser.add_argument("--jobs", type=int, default=2, help="verify --jobs (pg_restore -j) on every side")
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--budget-min", type=float, help="start no new round after this many minutes")
    parser.add_argument("--profile", action="store_true", help="untimed stage diagnostics after the rounds")
    args = parser.parse_args()

    pg = binaries.find_major(15) if any(i.major == 15 for i in binaries.installations()) else binaries.find()
    work = Path(tempfile.mkdtemp(prefix="pgtool-bench-rd-"))
    cluster = LocalCluster(pg)
    moto = start_server("s3", work / "moto")
    moto.make_bucket(BUCKET)
    s3_env = moto.env(PGTOOL_LOG_LEVEL="warning")
    store = s3_store(s3_env)
    key_file = work / "repo.key"
    key_file.write_bytes(secrets.token_bytes(32))
    key_file.chmod(0o600)
    times: dict[str, dict[str, list[float]]] = {s: {"backup": [], "verify": []} for s in SIDES}
    restore_s: dict[str, list[float]] = {s: [] for s in SIDES}
    raw: dict[str, list[float]] = {"put": [], "get": [], "stored_mb": []}
    loads: list[str] = [load()]
    commits = [checkout_commit()]
    size = 0
    rounds = 0
    try:
        cluster.init().start()
        print(f"building a >= {args.min_mb} MB database (load {load()}) ...", flush=True)
        size = build_database(cluster, args.min_mb)
        print(f"database size {size / 1024 / 1024:.0f} MB, PostgreSQL {pg.version}", flush=True)
        dsn = cluster.dsn()
        start_rounds = time.perf_counter()
        try:
            for rnd in range(1, args.rounds + 1):
                if args.budget_min and time.perf_counter() - start_rounds > args.budget_min * 60:
                    print(f"budget of {args.budget_min} min spent after {rounds} rounds", flush=True)
                    break
                loads.append(load())
                where = {
                    "disk": (
                        ["--dest", str(work / f"disk-{rnd}")],
                        ["--backup-dir", str(work / f"disk-{rnd}")],
                    ),
                    "s3": (["--repo", f"s3://{BUCKET}/s3-{rnd}"],) * 2,
                    "repo-local": (["--repo", str(work / f"repo-{rnd}")],) * 2,
                    "s3-enc": (["--repo", f"s3://{BUCKET}/enc-{rnd}", "--repo-key-file", str(key_file)],) * 2,
                }
                order = SIDES if rnd % 2 else tuple(reversed(SIDES))
                for side in order:
                    backup_where, verify_where = where[side]
                    settle(cluster)
                    t, _ = run_logged(
                        [*pgtool_argv(), "backup", "--dsn", dsn, *backup_where, "-d", "bench"], s3_env
                    )
                    times[side]["backup"].append(t)
                    settle(cluster)
                    t, events = run_logged(
                        [*pgtool_argv(), "verify", *verify_where, "--jobs", str(args.jobs)], s3_env
                    )
                    times[side]["verify"].append(t)
                    restore_s[side].append(event(events, "dump verified", "restore_s"))
                # moto's ceiling for the bytes (b) stored this round, then free moto's memory
                stored = drop_prefix(store, f"enc-{rnd}/")
                stored = drop_prefix(store, f"s3-{rnd}/") or stored
                put_s, get_s = raw_put_get(store, stored)
                raw["put"].append(put_s)
                raw["get"].append(get_s)
                raw["stored_mb"].append(stored / 1024 / 1024)
                shutil.rmtree(work / f"disk-{rnd}", ignore_errors=True)
                shutil.rmtree(work / f"repo-{rnd}", ignore_errors=True)
                rounds = rnd
                print(
                    f"round {rnd} ({'/'.join(order)}, load {loads[-1]}): "
                    + " | ".join(
                        f"{s} {times[s]['backup'][-1]:.1f}+{times[s]['verify'][-1]:.1f}s" for s in SIDES
                    )
                    + f" | moto raw PUT {put_s:.1f}s GET {get_s:.1f}s for {stored / 2**20:.0f} MB",
                    flush=True,
                )
        except (subprocess.CalledProcessError, OSError, AssertionError) as exc:
            detail = getattr(exc, "stderr", None) or ""
            print(f"round {rounds + 1} failed: {exc} {str(detail)[-800:]}", flush=True)
        for side in SIDES:
            for values in (*times[side].values(), restore_s[side]):
                del values[rounds:]
        if not rounds:
            return 1
        phases = profile(cluster, pg, work) if args.profile else []
    finally:
        moto.stop()
        cluster.cleanup()
        shutil.rmtree(work, ignore_errors=True)

    loads.append(load())
    emit(
        report(args, pg.version, size, rounds, times, restore_s, raw, loads, commits) + phases, args.markdown
    )
    return 0


def report(
    args: argparse.Namespace,
    version: object,
    size: int,
    rounds: int,
    times: dict[str, dict[str, list[float]]],
    restore_s: dict[str, list[float]],
    raw: dict[str, list[float]],
    loads: list[str],
    commits: list[str],
) -> list[str]:
    def total(side: str) -> list[float]:
        return [b + v for b, v in zip(times[side]["backup"], times[side]["verify"], strict=True)]

    def series(side: str, what: str) -> list[float]:
        return total(side) if what == "sum" else times[side][what]

    lines = [
        f"| run | {datetime.now(UTC).isoformat(timespec='minutes')} |",
        "|---|---|",
        f"| machine | {platform.machine()}, {os.cpu_count()} cores, shared with other agents' test runs |",
        f"| load average (1/5/15 min) at start, before each round, at the end | {' ; '.join(loads)} |",
        f"| PostgreSQL | {version} |",
        f"| pgtool checkout | {' to '.join(dict.fromkeys([*commits, checkout_commit()]))} |",
        f"| database | pgbench tables + events, {size / 1024 / 1024:.0f} MB |",
        f"| rounds | {rounds}, order reversed every other round; verify --jobs {args.jobs} |",
        "",
        "| side | backup (median s) | verify (median s) | sum (median s)"
        " | pg_restore inside verify (median s) |",
        "|---|---|---|---|---|",
    ]
    for side in SIDES:
        lines.append(
            f"| {side} | {statistics.median(times[side]['backup']):.2f} | "
            f"{statistics.median(times[side]['verify']):.2f} | {statistics.median(total(side)):.2f} | "
            f"{statistics.median(restore_s[side]):.2f} |"
        )
    lines += [
        "",
        "Per-round ratios against (a) disk: median, bootstrap 90% interval of the median.",
        "",
        "| ratio | backup | verify | backup + verify |",
        "|---|---|---|---|",
    ]
    for side, label in (
        ("s3", "(b) s3 / disk"),
        ("repo-local", "(c) repo-local / disk"),
        ("s3-enc", "(d) s3-enc / disk"),
    ):
        cells = []
        for what in ("backup", "verify", "sum"):
            ratios = paired_ratios(series(side, what), series("disk", what))
            cells.append(f"{statistics.median(ratios):.3f}x ({median_interval(ratios)})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    mb = statistics.median(raw["stored_mb"])
    lines += [
        "",
        f"Goal: (b) s3 / disk backup + verify <= {GOAL}x.",
        "",
        f"moto's raw throughput for the same bytes (one obstore multipart PUT in 8 MiB parts, one streamed"
        f" GET, {mb:.0f} MB = the stored S3 dump): PUT {statistics.median(raw['put']):.2f} s"
        f" ({mb / statistics.median(raw['put']):.0f} MB/s), GET {statistics.median(raw['get']):.2f} s"
        f" ({mb / statistics.median(raw['get']):.0f} MB/s) (medians).",
        "",
        "Raw times (s): "
        + "; ".join(
            f"{side} {what}: {seconds(times[side][what])}" for side in SIDES for what in ("backup", "verify")
        )
        + "; pg_restore inside verify: "
        + "; ".join(f"{side}: {seconds(restore_s[side])}" for side in SIDES)
        + "; moto raw PUT: "
        + seconds(raw["put"])
        + "; GET: "
        + seconds(raw["get"]),
    ]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
