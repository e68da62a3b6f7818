#!/usr/bin/env python3
"""Benchmark `pgtool lint` against Squawk on the same migration files, side by side.

Usage: python benchmarks/lint.py [--sizes 1000,10000] [--runs 5] [--generator auto|shared|own]
                                 [--corpus DIR] [--force]

For each size, writes that many migration files of ten statements each (fixed seed): with the team's
shared generator (`../shared/bench/make_lint_corpus.py`, found beside the repository) when it exists
(`--generator auto`, the default), else with this script's own (a statement mix like real
migrations: tables, indexes with and without CONCURRENTLY, column changes, constraints, data fixes,
functions, views, partitions). Then times the two complete command-line runs alternately, RUNS times
each, and prints the medians and the ratio pgtool / squawk (goal: at most 1.0). Wall time includes
interpreter start-up. `--corpus DIR` times an existing folder instead. Refuses to measure when the
1-minute load average is 1.5 or more (other work would decide the figures) unless `--force`.
Needs `squawk` (pip install squawk-cli) on PATH or beside this Python.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STATEMENTS = [
    "CREATE TABLE IF NOT EXISTS audit_{n} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
    "actor text NOT NULL, action text NOT NULL, at timestamptz NOT NULL DEFAULT now());",
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS audit_{n}_actor ON audit_{n} (actor);",
    "CREATE INDEX accounts_email_{n} ON accounts (lower(email));",
    "CREATE UNIQUE INDEX invoices_number_{n} ON billing.invoices (number) WHERE deleted_at IS NULL;",
    "ALTER TABLE accounts ADD COLUMN flag_{n} boolean;",
    "ALTER TABLE accounts ADD COLUMN token_{n} uuid DEFAULT gen_random_uuid();",
    "ALTER TABLE accounts ADD COLUMN seen_{n} timestamptz NOT NULL DEFAULT now();",
    "ALTER TABLE invoices ALTER COLUMN amount TYPE numeric(16,2);",
    "ALTER TABLE invoices ADD CONSTRAINT amount_pos_{n} CHECK (amount > 0) NOT VALID;",
    "ALTER TABLE invoices VALIDATE CONSTRAINT amount_pos_{n};",
    "ALTER TABLE invoices ADD CONSTRAINT invoices_account_{n} FOREIGN KEY (account_id) "
    "REFERENCES accounts (id);",
    "ALTER TABLE accounts DROP COLUMN IF EXISTS old_{n};",
    "ALTER TABLE accounts RENAME COLUMN nick_{n} TO handle_{n};",
    "ALTER TABLE accounts ALTER COLUMN email SET NOT NULL;",
    "SET lock_timeout = '2s';",
    "UPDATE accounts SET flag_{n} = false WHERE id BETWEEN {n} AND {n} + 1000;",
    "INSERT INTO plans (name, price) VALUES ('plan {n}', {n}) ON CONFLICT (name) DO NOTHING;",
    "CREATE OR REPLACE FUNCTION touch_{n}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "NEW.updated_at := now(); RETURN NEW; END $$;",
    "CREATE OR REPLACE VIEW active_{n} AS SELECT id, email FROM accounts WHERE deleted_at IS NULL;",
    "CREATE TABLE events_{n} PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');",
    "DROP INDEX IF EXISTS legacy_{n};",
    "COMMENT ON COLUMN accounts.email IS 'login {n}';",
    "GRANT SELECT ON accounts TO reporting;",
    "REFRESH MATERIALIZED VIEW CONCURRENTLY stats_{n};",
]


def generate(folder: Path, files: int, seed: int = 20261124) -> None:
    """Write `files` migrations of ten statements each into `folder` (deterministic for a seed)."""
    rnd = random.Random(seed)  # noqa: S311 - a reproducible corpus, not a secret
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        body = "\n".join(rnd.choice(STATEMENTS).format(n=i * 10 + j) for j in range(10))
        (folder / f"{i:05d}_migration.up.sql").write_text(f"-- migration {i}\n{body}\n")


def tool(name: str) -> str:
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        sys.exit(f"{name} not found (pip install {'squawk-cli' if name == 'squawk' else '-e .'})")
    return found


CPU: dict[str, list[float]] = {}


def timed(argv: list[str]) -> float:
    """Wall time of one run; its CPU time (user + system, all threads) goes to CPU[argv[0]]."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 1):
        sys.exit(f"{argv[0]} exited {proc.returncode}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    CPU.setdefault(argv[0], []).append(cpu)
    return elapsed


SHARED = [
    Path(__file__).resolve().parents[2] / "shared" / "bench" / "make_lint_corpus.py",
    Path("/work/shared/bench/make_lint_corpus.py"),
]
GOAL = 1.0
MAX_LOAD = 1.5


def shared_generator() -> Path | None:
    return next((p for p in SHARED if p.is_file()), None)


def make_corpus(folder: Path, files: int, generator: str) -> str:
    """Write `files` migrations into `folder`; returns the generator's name."""
    shared = shared_generator() if generator in ("auto", "shared") else None
    if generator == "shared" and shared is None:
        sys.exit("the shared generator (../shared/bench/make_lint_corpus.py) is not there")
    if shared is not None:
        subprocess.run([sys.executable, str(shared), str(files), str(folder)], check=True)
        return "shared make_lint_corpus.py"
    generate(folder, files)
    return "benchmarks/lint.py generator"


def measure(folder: Path, runs: int) -> dict[str, float | int]:
    files = sorted(str(p) for p in folder.glob("*.sql") if not p.name.endswith(".down.sql"))
    pgtool = [tool("pgtool"), "lint", str(folder)]
    squawk = [tool("squawk"), *files]
    statements = sum(len(Path(f).read_text().split(";")) - 1 for f in files)
    timed(pgtool), timed(squawk)  # warm the page cache and both binaries
    CPU.clear()
    ours, theirs = [], []
    for _ in range(runs):
        ours.append(timed(pgtool))
        theirs.append(timed(squawk))
    return {
        "files": len(files),
        "statements": statements,
        "pgtool": statistics.median(ours),
        "squawk": statistics.median(theirs),
        "pgtool_cpu": statistics.median(CPU[pgtool[0]]),
        "squawk_cpu": statistics.median(CPU[squawk[0]]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated file counts")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--generator", choices=("auto", "shared", "own"), default="auto")
    parser.add_argument("--corpus", type=Path, help="time this folder instead of generating")
    parser.add_argument("--force", action="store_true", help="measure even on a busy machine")
    args = parser.parse_args()

    load = os.getloadavg()[0]
    if load >= MAX_LOAD and not args.force:
        print(f"load average {load:.2f} >= {MAX_LOAD}: not measuring (other work would decide the figures)")
        return 3
    version = subprocess.run([tool("squawk"), "--version"], capture_output=True, text=True).stdout.strip()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load {load:.2f}, "
        f"Python {platform.python_version()}, {version}"
    )
    print(
        "| corpus | files | statements | pgtool wall | squawk wall | ratio (goal <= 1.0) "
        "| pgtool CPU | squawk CPU |"
    )
    print("|---|---|---|---|---|---|---|---|")
    targets: list[tuple[str, Path, Path | None]] = []
    if args.corpus:
        targets.append((str(args.corpus), args.corpus, None))
    else:
        for size in (int(s) for s in args.sizes.split(",")):
            folder = Path(tempfile.mkdtemp(prefix="pgtool-lint-bench-"))
            targets.append((make_corpus(folder, size, args.generator), folder, folder))
    try:
        for name, folder, _tmp in targets:
            m = measure(folder, args.runs)
            print(
                f"| {name} | {m['files']:,} | {m['statements']:,} "
                f"| {m['pgtool']:.3f} s | {m['squawk']:.3f} s "
                f"| {m['pgtool'] / m['squawk']:.2f} | {m['pgtool_cpu']:.3f} s | {m['squawk_cpu']:.3f} s |",
                flush=True,
            )
    finally:
        for _name, _folder, tmp in targets:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
