"""Benchmark: parallel directory-format dumps against single-process custom-format ones, side by side.

Builds the database of `backup_verify.py` (pgbench -i for ~40% of --min-mb, an `events` table of
hashes for the rest) on a throwaway LocalCluster, then alternates, for --rounds rounds (the order
rotated each round, so a noisy neighbour hurts all alike):
- `pg_dump -Fc -f FILE bench`                         (plain, one process)
- `pg_dump -Fd -j J -f DIR bench`                     (plain, J workers)
- `pgtool backup --database bench --dest D`           (custom format: snapshot, counts, sha256, manifest)
- `pgtool backup ... --format directory --jobs-per-dump J`
and prints the median times, the ratios (-Fd -jJ / -Fc, for both pairs) and the largest tables'
share of the dump: pg_dump -j gives each table to one worker, so the largest table bounds the
parallel dump's time however many workers there are.

Usage: python benchmarks/parallel_dump.py [--rounds 2] [--min-mb 2048] [--jobs 2] [--markdown FILE]
       [--budget-min M]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _stats import checkout_commit, emit
from backup_verify import build_database, pgtool_argv, settle, timed

from pgtool.pg import binaries
from pgtool.pg.cluster import LocalCluster

TABLES_SQL = """
SELECT c.relname, pg_catalog.pg_table_size(c.oid) FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 2 DESC
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--min-mb", type=int, default=2048)
    parser.add_argument("--jobs", type=int, default=2, help="pg_dump -j / --jobs-per-dump")
    parser.add_argument("--markdown", type=Path, help="also write the results as markdown here")
    parser.add_argument("--budget-min", type=float, help="start no new round after this many minutes")
    args = parser.parse_args()

    pg = binaries.find_major(15) if any(i.major == 15 for i in binaries.installations()) else binaries.find()
    work = Path(tempfile.mkdtemp(prefix="pgtool-bench-pd-"))
    cluster = LocalCluster(pg)
    env = {**os.environ, "PGTOOL_LOG_LEVEL": "warning"}
    names = ("pg_dump -Fc", f"pg_dump -Fd -j{args.jobs}", "pgtool backup", "pgtool backup -Fd")
    times: dict[str, list[float]] = {k: [] for k in names}
    try:
        cluster.init().start()
        build_start = time.perf_counter()
        print(f"building a >= {args.min_mb} MB database ...", flush=True)
        size = build_database(cluster, args.min_mb)
        build_s = time.perf_counter() - build_start
        with cluster.connect("bench") as conn:
            tables = [(str(r[0]), int(r[1])) for r in conn.execute(TABLES_SQL).fetchall()]
        mb = size / 2**20
        print(f"database {mb:.0f} MB (built in {build_s:.0f} s), PostgreSQL {pg.version}", flush=True)
        dsn, bench = cluster.dsn(), cluster.dsn("bench")
        start = time.perf_counter()
        for rnd in range(1, args.rounds + 1):
            if args.budget_min and time.perf_counter() - start > args.budget_min * 60:
                print(f"time budget spent: stopping after {rnd - 1} rounds", flush=True)
                break
            fc, fd = work / "plain.dump", work / "plain.dir"
            backup = [*pgtool_argv(), "backup", "--dsn", dsn, "-d", "bench", "--retention-days", "0"]
            argvs = {
                names[0]: [pg.path("pg_dump"), "-Fc", "-f", str(fc), "-d", bench],
                names[1]: [pg.path("pg_dump"), "-Fd", f"-j{args.jobs}", "-f", str(fd), "-d", bench],
                names[2]: [*backup, "--dest", str(work / "dumps-c")],
                names[3]: [
                    *backup,
                    "--dest",
                    str(work / "dumps-d"),
                    "--format",
                    "directory",
                    "--jobs-per-dump",
                    str(args.jobs),
                ],
            }
            order = list(names[rnd % 4 :] + names[: rnd % 4])
            for name in order:
                shutil.rmtree(fd, ignore_errors=True)
                for d in ("dumps-c", "dumps-d"):
                    shutil.rmtree(work / d, ignore_errors=True)
                fc.unlink(missing_ok=True)
                settle(cluster)
                seconds = timed(argvs[name], env=env)
                times[name].append(seconds)
                print(f"round {rnd}  {name:<24} {seconds:7.1f} s", flush=True)
    finally:
        cluster.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items() if v}
    emit(report(args, pg.version, size, build_s, tables, times, med), args.markdown)
    return 0


def report(
    args: argparse.Namespace,
    version: str,
    size: int,
    build_s: float,
    tables: list[tuple[str, int]],
    times: dict[str, list[float]],
    med: dict[str, float],
) -> list[str]:
    names = list(times)
    total = sum(s for _n, s in tables) or 1
    out = [
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {checkout_commit()}, {os.cpu_count()} cores "
        f"({platform.machine()}), PostgreSQL {version}, database {size / 2**20:.0f} MB "
        f"(built in {build_s:.0f} s), {len(times[names[0]])} rounds, -j{args.jobs}.",
        "",
        "| command | runs (s) | median (s) |",
        "|---|---|---|",
    ]
    for name in names:
        runs = ", ".join(f"{t:.1f}" for t in times[name])
        out.append(f"| `{name}` | {runs} | {med.get(name, float('nan')):.1f} |")
    out += ["", "| ratio | median |", "|---|---|"]
    for a, b in ((names[1], names[0]), (names[3], names[2]), (names[2], names[0]), (names[3], names[1])):
        if a in med and b in med:
            out.append(f"| `{a}` / `{b}` | {med[a] / med[b]:.2f}x |")
    out += ["", "Table sizes (heap + TOAST; pg_dump -j gives each table to one worker):", ""]
    out += [f"- {name}: {s / 2**20:.0f} MB ({100 * s / total:.0f}%)" for name, s in tables[:4]]
    return out


if __name__ == "__main__":
    raise SystemExit(main())
