"""Tracing for `backup_verify.py --profile`: one pgtool run's wall time split into phases.

The phases come from pgtool's own debug log lines (JSON, each with a timestamp) and from the lifetimes
of its child processes (pg_dump, pg_restore), polled every 10 ms through Linux's /proc. Nothing here
changes what pgtool does; the traced runs are untimed extras beside the benchmark's rounds.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from _stats import seconds


def _children(pid: int) -> list[int]:
    """Every descendant of `pid` (Linux /proc), parents first, [] once it is gone.

    Descendants, not children: pgtool may start pg_dump and pg_restore through a wrapper process.
    """
    found: list[int] = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in children.read_text().split()]
    return found + [grandchild for child in found for grandchild in _children(child)]


def _proc_name(pid: int) -> str:
    """'pg_dump', 'pg_restore --list', 'pg_restore': the binary, plus --list (verify's TOC read)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    name = Path(argv[0].decode(errors="replace")).name
    return f"{name} --list" if b"--list" in argv else name


def _cpu_s(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def traced(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run argv once with debug JSON logs, polling its child processes every 10 ms.

    Returns the wall time, each log event's time from the start, each child's first and last sighting
    (so its lifetime, good to ~10 ms) and the CPU seconds of pgtool's own process (its Python threads:
    hashing, fsync, log parsing; the server backends' row counts are not in it).
    """
    env = {**env, "PGTOOL_LOG_LEVEL": "debug", "PGTOOL_LOG_FORMAT": "json"}
    wall0, start = time.time(), time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    children: dict[int, list[object]] = {}
    cpu = 0.0
    while proc.poll() is None:
        now = time.perf_counter() - start
        cpu = _cpu_s(proc.pid) or cpu
        for pid in _children(proc.pid):
            children.setdefault(pid, [_proc_name(pid), now, now])[2] = now
        time.sleep(0.01)
    end = time.perf_counter() - start
    reader.join()
    if proc.returncode:
        raise RuntimeError(f"{argv[1:3]} exited {proc.returncode}: {''.join(lines)[-2000:]}")
    events = []
    for line in lines:
        if line.startswith("{"):
            event = json.loads(line)
            event["at"] = datetime.fromisoformat(event["timestamp"]).timestamp() - wall0
            events.append(event)
    return {"wall": end, "events": events, "children": list(children.values()), "cpu": cpu}


def _at(run: dict[str, Any], event: str) -> float:
    """When the first log line with this event came, in seconds from the start."""
    found = [e["at"] for e in run["events"] if e["event"] == event]
    if not found:
        raise RuntimeError(f"no {event!r} log line (events: {[e['event'] for e in run['events']][:20]})")
    return float(found[0])


def _child(run: dict[str, Any], name: str) -> tuple[float, float]:
    """The first and last sighting of the child process with this name, in seconds from the start."""
    found = [(c[1], c[2]) for c in run["children"] if c[0] == name]
    if not found:
        raise RuntimeError(f"no {name} child seen (children: {[c[0] for c in run['children']]})")
    return found[0]


def backup_phases(run: dict[str, Any]) -> dict[str, float]:
    """Where a `pgtool backup` of one database spends its wall time, phase by phase (seconds)."""
    began = _at(run, "backup starting")
    dump_start, dump_end = _child(run, "pg_dump")
    written, finished = _at(run, "dump written"), _at(run, "run finished")
    return {
        "start-up (interpreter, imports, CLI; to the first log line)": began,
        "connect, export snapshot, list tables (to pg_dump's start)": dump_start - began,
        "pg_dump (its lifetime; row counts run beside it)": dump_end - dump_start,
        "after pg_dump: rest of the counts, fsync + SHA-256, manifest, rename": written - dump_end,
        "retention, report (to 'run finished')": finished - written,
        "exit": run["wall"] - finished,
        "pgtool's own process, CPU seconds": run["cpu"],
    }


def verify_phases(run: dict[str, Any]) -> dict[str, float]:
    """Where a `pgtool verify` of one dump spends its wall time, phase by phase (seconds)."""
    restore_start, restore_end = _child(run, "pg_restore")
    verified, finished = _at(run, "dump verified"), _at(run, "run finished")
    phases = {
        "start-up, manifest, TOC, own cluster or CREATE DATABASE (to pg_restore's start)": restore_start,
        "pg_restore (its lifetime; counts and SHA-256 run beside it)": restore_end - restore_start,
        "after pg_restore: last counts, SHA-256 wait, compare, .verified.json": verified - restore_end,
        "drop or own cluster's stop, evidence record, report (to 'run finished')": finished - verified,
        "exit": run["wall"] - finished,
        "pgtool's own process, CPU seconds": run["cpu"],
    }
    initdb = [c[2] - c[1] for c in run["children"] if c[0] == "initdb"]
    if initdb:  # the drill's own throwaway cluster (the default since 12eb094)
        phases["of the first phase: initdb of the own cluster"] = initdb[0]
    return phases


def profile(
    cluster: Any, pg: Any, work: Path, runs: int, jobs: int, env: dict[str, str], target: list[str]
) -> list[str]:
    """Untimed traced runs: each side's wall time split into phases, beside its plain reference.

    Printed, and returned as markdown lines. The phases come from pgtool's debug log lines and the
    lifetimes of its child processes; the plain references are timed as in the rounds.
    """
    from backup_verify import pgtool_argv, settle, timed  # its runner, imported when run

    dsn = cluster.dsn()
    plain: dict[str, list[float]] = {
        "pg_dump -Fc": [],
        "createdb + pg_restore + dropdb": [],
        "pg_restore": [],
    }
    split: dict[str, dict[str, list[float]]] = {"backup": {}, "verify": {}}
    walls: dict[str, list[float]] = {"backup": [], "verify": []}
    for n in range(1, runs + 1):
        dest = work / f"profile-{n}"
        settle(cluster)
        plain["pg_dump -Fc"].append(
            timed([pg.path("pg_dump"), "-Fc", "-f", str(work / "plain.dump"), "-d", cluster.dsn("bench")])
        )
        settle(cluster)
        run = traced([*pgtool_argv(), "backup", "--dsn", dsn, "--dest", str(dest), "-d", "bench"], env)
        walls["backup"].append(run["wall"])
        for phase, took in backup_phases(run).items():
            split["backup"].setdefault(phase, []).append(took)
        dump = next(dest.glob("bench/*.dump"))
        settle(cluster)
        start = time.perf_counter()
        subprocess.run([pg.path("createdb"), f"--maintenance-db={dsn}", "restore_ref"], check=True)
        restore_start = time.perf_counter()
        subprocess.run(
            [pg.path("pg_restore"), f"-j{jobs}", "-d", cluster.dsn("restore_ref"), str(dump)], check=True
        )
        plain["pg_restore"].append(time.perf_counter() - restore_start)
        subprocess.run([pg.path("dropdb"), f"--maintenance-db={dsn}", "restore_ref"], check=True)
        plain["createdb + pg_restore + dropdb"].append(time.perf_counter() - start)
        settle(cluster)
        run = traced([*pgtool_argv(), "verify", *target, "--backup-dir", str(dest), "--jobs", str(jobs)], env)
        walls["verify"].append(run["wall"])
        for phase, took in verify_phases(run).items():
            split["verify"].setdefault(phase, []).append(took)
        shutil.rmtree(dest)
        print(
            f"profile run {n}: backup {walls['backup'][-1]:.2f}s verify {walls['verify'][-1]:.2f}s",
            flush=True,
        )

    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):.2f} s ({seconds(values)})"

    lines = [
        "",
        f"Where the time goes: {runs} untimed traced run(s) of each side (debug log lines and child-process",
        "lifetimes polled every 10 ms, so each phase is good to ~0.01 s; medians, each run's value in",
        "brackets).",
        "",
        "| phase | seconds |",
        "|---|---|",
        f"| plain pg_dump -Fc | {cell(plain['pg_dump -Fc'])} |",
        f"| **pgtool backup, wall** | {cell(walls['backup'])} |",
        *(f"| backup: {phase} | {cell(v)} |" for phase, v in split["backup"].items()),
        f"| plain createdb + pg_restore -j{jobs} + dropdb | "
        f"{cell(plain['createdb + pg_restore + dropdb'])} |",
        f"| plain pg_restore -j{jobs} alone | {cell(plain['pg_restore'])} |",
        f"| **pgtool verify --jobs {jobs}, wall** | {cell(walls['verify'])} |",
        *(f"| verify: {phase} | {cell(v)} |" for phase, v in split["verify"].items()),
    ]
    print("\n".join(lines))
    return lines
