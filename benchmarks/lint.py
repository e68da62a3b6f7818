#!/usr/bin/env python3
"""Benchmark `pgtool lint` against Squawk on the same migration files, side by side.

Usage: python benchmarks/lint.py [--files 1000] [--runs 5] [--corpus DIR] [--keep DIR]

Generates FILES migration files of ten statements each (fixed seed; a statement mix like real
migrations: tables, indexes with and without CONCURRENTLY, column changes, constraints, data fixes,
functions, views, partitions), then times the two complete command-line runs alternately, RUNS times
each, and prints the medians and the ratio pgtool / squawk (goal: at most 1.5). Wall time includes
interpreter start-up, which is most of pgtool's budget. `--corpus DIR` times an existing folder
instead (e.g. one written by another generator). Needs `squawk` (pip install squawk-cli) on PATH or
beside this Python.
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--corpus", type=Path, help="time this folder instead of generating one")
    parser.add_argument("--keep", type=Path, help="generate into this folder and keep it")
    args = parser.parse_args()

    tmp = None
    if args.corpus:
        folder = args.corpus
    else:
        folder = args.keep or Path(tempfile.mkdtemp(prefix="pgtool-lint-bench-"))
        tmp = None if args.keep else folder
        generate(folder, args.files)
    try:
        files = sorted(str(p) for p in folder.glob("*.sql") if not p.name.endswith(".down.sql"))
        pgtool = [tool("pgtool"), "lint", str(folder)]
        squawk = [tool("squawk"), *files]
        env_note = (
            f"{len(files)} files, {sum(len(Path(f).read_text().split(';')) - 1 for f in files)} statements"
        )
        timed(pgtool), timed(squawk)  # warm the page cache and both binaries
        CPU.clear()
        ours, theirs = [], []
        for _ in range(args.runs):
            ours.append(timed(pgtool))
            theirs.append(timed(squawk))
        ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
        version = subprocess.run([squawk[0], "--version"], capture_output=True, text=True).stdout.strip()
        print(f"corpus: {folder if args.corpus else 'generated'} ({env_note})")
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}, {version}"
        )
        print(f"pgtool lint: median {ours_median:.3f} s  (runs: {', '.join(f'{t:.3f}' for t in ours)})")
        print(f"squawk:      median {theirs_median:.3f} s  (runs: {', '.join(f'{t:.3f}' for t in theirs)})")
        cpu_ours, cpu_theirs = statistics.median(CPU[pgtool[0]]), statistics.median(CPU[squawk[0]])
        print(f"CPU time (median, all threads): pgtool {cpu_ours:.3f} s, squawk {cpu_theirs:.3f} s")
        print(
            f"ratio pgtool/squawk: {ours_median / theirs_median:.2f} wall (goal <= 1.5), "
            f"{cpu_ours / cpu_theirs:.2f} CPU"
        )
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
