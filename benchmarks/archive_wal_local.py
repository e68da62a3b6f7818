"""Benchmark: archiving into a LOCAL repository, per segment, side by side (issue 18, "Local archiving").

One run, one machine, real WAL: a LocalCluster (archive_mode on, archive_command empty) writes md5 text
until --segments completed segments wait in pg_wal; they are copied aside, and every side archives each
of them once, as a fresh process (what archive_command does), into its own repository or directory:

  - pgtool archive-wal %p %f --repo DIR               (zstd level 1, the default)
  - pgtool archive-wal %p %f --repo DIR --compress none
  - a durable stdlib copy (python3 -S: temporary, fsync, rename, fsync of the directory;
    benchmarks/archive_wal.py's REFERENCE)
  - pgbackrest archive-push, zst level 1 and none (posix repository, benchmarks/setup-pgbackrest.sh),
    configured as benchmarks/wal_drain.py does
  - with --baseline-src DIR (a checkout's src/, e.g. from `git archive`): that pgtool too, zstd-1, so a
    before/after comparison runs under the same load.

The side order rotates by one per segment, so each side runs first, last and in between equally often
on a machine whose load changes. Python's bytecode cache: an installed pgtool has its .pyc files; the
script compiles both pgtool trees before it starts, so no side pays for compiling its sources on each
call (PYTHONDONTWRITEBYTECODE would otherwise make an editable checkout do exactly that).

    bash benchmarks/setup-pgbackrest.sh
    python benchmarks/archive_wal_local.py --segments 24 --markdown /tmp/local.md

Then (skip with --drain 0) the same comparison as PostgreSQL experiences it: a backlog of --drain
segments per side, each drained by the server itself into a local repository, timed from the reload that
sets the side's archiving until pg_stat_archiver counted them all, with the machine's CPU over the same
window (/proc/stat): pgtool's archive_command; pgtool's archive module (`pgtool archive-module`,
archive_library = pgtool_archive) with the same command plus `--ahead 2`, so that the uploader compresses
and writes ahead on the other core while the archiver only waits for its answers; pgBackRest's
archive-push zst-1 as archive_command.

Goal: pgtool --repo DIR (zstd-1) costs at most 0.8x pgBackRest's archive-push zst-1 per segment, and the
report gives it against the durable stdlib copy too.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _stats import as_installed
from archive_wal import REFERENCE
from archive_wal_s3 import checkout_commit
from wal_drain import build_module, drain, load_module, machine_cpu, make_backlog, pgbackrest_stanza

ROOT = Path(__file__).resolve().parent.parent
PGTOOL_Z = "pgtool --repo DIR (zstd-1, default)"
PGTOOL_N = "pgtool --repo DIR --compress none"
PGBR_Z = "pgbackrest archive-push zst-1"
PGBR_N = "pgbackrest archive-push none"
COPY = "durable stdlib copy (python3 -S)"
BASELINE = "pgtool --repo DIR (zstd-1), --baseline-src"


def sides(work: Path, cluster: object, baseline: Path | None) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Each side's argv template ({seg}, {name}) and environment."""
    env = {**os.environ, "PGTOOL_LOG_LEVEL": "warning"}
    pgtool = str(Path(sys.executable).parent / "pgtool")
    (work / "ref.py").write_text(REFERENCE)
    (work / "ref").mkdir()
    out: dict[str, tuple[list[str], dict[str, str]]] = {
        PGTOOL_Z: ([pgtool, "archive-wal", "{seg}", "{name}", "--repo", f"{work}/repo-z"], env),
        PGTOOL_N: (
            [pgtool, "archive-wal", "{seg}", "{name}", "--repo", f"{work}/repo-n", "--compress", "none"],
            env,
        ),
        COPY: (["/usr/bin/python3", "-S", str(work / "ref.py"), "{seg}", "{name}", f"{work}/ref"], env),
    }
    if baseline is not None:
        base_env = {**env, "PYTHONPATH": str(baseline)}  # ahead of the editable install's .pth entry
        out[BASELINE] = ([pgtool, "archive-wal", "{seg}", "{name}", "--repo", f"{work}/repo-b"], base_env)
    pgbackrest = shutil.which("pgbackrest")
    if pgbackrest is None:
        raise SystemExit("benchmark: pgbackrest not found (bash benchmarks/setup-pgbackrest.sh)")
    variants = ((PGBR_Z, ["--compress-type=zst", "--compress-level=1"]), (PGBR_N, ["--compress-type=none"]))
    for label, extra in variants:
        stanza = work / f"pgbr-{len(out)}"
        stanza.mkdir()
        base = pgbackrest_stanza(stanza, cluster, env=env)
        out[label] = ([*base, *extra, "archive-push", "{seg}"], env)
    return out


def measure(
    table: dict[str, tuple[list[str], dict[str, str]]], segs: list[Path]
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall time and CPU time (user + system, from the child's rusage) of every call, per side."""
    times: dict[str, list[float]] = {k: [] for k in table}
    cpu: dict[str, list[float]] = {k: [] for k in table}
    labels = list(table)
    for i, seg in enumerate(segs):
        order = labels[i % len(labels) :] + labels[: i % len(labels)]
        for label in order:
            template, env = table[label]
            argv = [a.replace("{seg}", str(seg)).replace("{name}", seg.name) for a in template]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            proc = subprocess.run(argv, capture_output=True, text=True, env=env)
            times[label].append(time.perf_counter() - started)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[label].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            if proc.returncode != 0:
                raise SystemExit(f"benchmark: {label} failed on {seg.name}: {proc.stderr[-800:]}")
    return times, cpu


def report(
    times: dict[str, list[float]], cpu: dict[str, list[float]], count: int, baseline: Path | None
) -> list[str]:
    med = {k: statistics.median(v) for k, v in times.items()}
    cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
    paired_z = [p / b for p, b in zip(times[PGTOOL_Z], times[PGBR_Z], strict=True)]
    paired_c = [p / c for p, c in zip(times[PGTOOL_Z], times[COPY], strict=True)]
    load = os.getloadavg()[0]
    lines = [
        "| run | " + f"{datetime.now(UTC).strftime('%Y-%m-%dT%H:%M+00:00')}, commit {checkout_commit()} |",
        "|---|---|",
        f"| machine | {platform.machine()}, {os.cpu_count()} cores, load average {load:.1f} at the end |",
        f"| segments | {count} real 16 MiB segments (md5 text), each archived once by every side, a fresh "
        "process per call, side order rotating per segment |",
        f"| versions | Python {platform.python_version()}, {pgbackrest_version()} |",
    ]
    if baseline is not None:
        lines.append(f"| baseline | pgtool from {baseline} (same venv, PYTHONPATH first) |")
    lines += [
        "",
        "| side | median ms/segment | p90 ms | pgtool zstd-1 / side | median CPU ms "
        "| pgtool zstd-1 CPU / side |",
        "|---|---|---|---|---|---|",
    ]
    for label, m in med.items():
        p90 = sorted(times[label])[int(0.9 * (len(times[label]) - 1))]
        c = cpu_med[label]
        lines.append(
            f"| {label} | {m * 1000:.0f} | {p90 * 1000:.0f} | {med[PGTOOL_Z] / m:.2f} | {c * 1000:.0f} | "
            f"{cpu_med[PGTOOL_Z] / c:.2f} |"
        )
    lines += [
        "",
        f"Paired per segment (same rotation slot): pgtool zstd-1 / pgbackrest zst-1 median "
        f"{statistics.median(paired_z):.2f}x; pgtool zstd-1 / durable copy median "
        f"{statistics.median(paired_c):.2f}x. Goal: at most 0.8x pgBackRest's archive-push zst-1.",
    ]
    return lines


def drains(work: Path, count: int) -> list[str]:
    """Per-segment wall and machine CPU of PostgreSQL draining `count` segments per side (docstring)."""
    from pgtool.pg.command import run_as_prefix

    module = build_module(work, None)
    pgtool = Path(sys.executable).parent / "pgtool"
    work.chmod(0o711)
    results: dict[str, tuple[float, float, int]] = {}
    labels = ["pgtool archive_command", "pgtool archive module, --ahead 2", "pgbackrest archive-push zst-1"]
    for label in labels:
        if "module" in label and module is None:
            continue
        cluster, names = make_backlog(count, {})
        try:
            repo = work / f"drain-{len(results)}"
            repo.mkdir()
            repo.chmod(0o777)
            command = f"{pgtool} archive-wal %p %f --repo {repo}"
            load = None
            if label.startswith("pgbackrest"):
                prefix = run_as_prefix(cluster.run_as)  # type: ignore[attr-defined]
                base = pgbackrest_stanza(repo, cluster, prefix=prefix)
                zst = ["--compress-type=zst", "--compress-level=1", "archive-push", "%p"]
                settings = {"archive_command": " ".join([*base, *zst])}
            elif "module" in label and module is not None:
                load_module(cluster, module)
                settings = {"pgtool_archive.command": command + " --ahead 2"}
                load = str(module)
            else:
                settings = {"archive_command": command}
            before = machine_cpu()[0]
            rate, _uploader = drain(cluster, names, settings, load=load)
            spent = machine_cpu()[0] - before
            with cluster.connect() as conn:  # type: ignore[attr-defined]
                failed = int(conn.execute("SELECT failed_count FROM pg_stat_archiver").fetchone()[0])
            results[label] = (1 / rate, spent / len(names), failed)
        finally:
            cluster.cleanup()  # type: ignore[attr-defined]
    ref_wall, ref_cpu, _ = results[labels[2]]
    lines = [
        "",
        f"PostgreSQL draining {count} segments per side into a local repository (a backlog each):",
        "",
        "| side | ms/segment (wall) | / pgBackRest zst-1 | machine CPU ms/segment | / pgBackRest zst-1 "
        "| failed |",
        "|---|---|---|---|---|---|",
    ]
    for label, (wall, cpu, failed) in results.items():
        lines.append(
            f"| {label} | {wall * 1000:.1f} | {wall / ref_wall:.2f} | {cpu * 1000:.1f} | {cpu / ref_cpu:.2f} "
            f"| {failed} |"
        )
    return lines


def pgbackrest_version() -> str:
    proc = subprocess.run(["pgbackrest", "version"], capture_output=True, text=True)
    return proc.stdout.strip() or "pgbackrest ?"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--segments", type=int, default=24, help="segments per side (default 24)")
    parser.add_argument("--baseline-src", type=Path, help="another pgtool checkout's src/ to compare")
    parser.add_argument(
        "--drain", type=int, default=60, help="segments per side drained by PostgreSQL (default 60; 0: skip)"
    )
    parser.add_argument("--markdown", type=Path, help="also write the report here")
    args = parser.parse_args()
    trees = [ROOT / "src" / "pgtool"] + ([args.baseline_src / "pgtool"] if args.baseline_src else [])
    as_installed(*trees)
    work = Path(tempfile.mkdtemp(prefix="pgtool-archive-local-"))
    cluster, names = make_backlog(args.segments + 1, {})
    try:
        pg_wal = Path(cluster.data_dir) / "pg_wal"  # type: ignore[attr-defined]
        src = work / "src"
        src.mkdir()
        segs = []
        for name in names[: args.segments]:
            shutil.copyfile(pg_wal / name, src / name)
            segs.append(src / name)
        table = sides(work, cluster, args.baseline_src)
        times, cpu = measure(table, segs)
    finally:
        cluster.cleanup()  # type: ignore[attr-defined]
    lines = report(times, cpu, len(segs), args.baseline_src)
    if args.drain:
        lines += drains(work, args.drain)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
