"""Record each restore drill in the evidence log, pass or fail: what `pgtool verify` calls.

`verify_dumps` and `verify_base` run the drills of `pgtool.logical` and `pgtool.physical` and then
append one record to `<backup-dir>/.evidence/` or `<base-dir>/.evidence/` (see `pgtool.evidence.log`).
A drill that fails is recorded too, then its error re-raised. If the record cannot be written the run
fails (exit 1): a drill without its evidence must never look like a success.
"""

from __future__ import annotations

import os
import platform
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, Unpack

from pgtool import __version__
from pgtool.errors import OperationError, PgtoolError, UsageError, error_line
from pgtool.evidence import log

if TYPE_CHECKING:
    from pgtool.logical.verify_dumps import VerifyOptions, VerifyResult
    from pgtool.obs.metrics import RunReport
    from pgtool.physical.base_catalog import BaseBackupInfo
    from pgtool.physical.base_drill import BaseDrillResult

# A leading dot: `pgtool backup` writes a database's dumps under its encoded name, which never starts
# with "." (encode_name escapes it), so no database, however named, shares this directory.
EVIDENCE_DIR = ".evidence"
Signer = Callable[[bytes], dict[str, str]]
T = TypeVar("T")


def signer(key_file: Path | None) -> Signer | None:
    """A signing function for the key in `key_file` (or $PGTOOL_EVIDENCE_KEY_FILE), else None.

    Loaded before the drill, so a bad key fails the run before any work (UsageError).
    """
    from pgtool.evidence import signing

    path = key_file or (Path(os.environ[signing.KEY_ENV]) if os.environ.get(signing.KEY_ENV) else None)
    if path is None:
        return None
    key = signing.load_private_key(path)
    return lambda message: signing.sign(key, message)


def _common(kind: str, started: datetime, seconds: float) -> dict[str, Any]:
    return {
        "kind": kind,
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "duration_seconds": round(seconds, 3),
        "host": socket.gethostname(),
        "pgtool_version": __version__,
        "python_version": platform.python_version(),
    }


def append_or_fail(write: Callable[[], T], drill_error: str | None) -> T:
    """`write()` the record; if it cannot be written the run fails, naming the drill's own error too."""
    try:
        return write()
    except PgtoolError as exc:
        also = f" (the drill itself failed: {drill_error})" if drill_error else ""
        raise OperationError(f"{exc.message}{also}", hint=exc.hint) from None


@dataclass
class Drilled(Generic[T]):
    """A drill that ran: its result, or the PgtoolError that stopped it (a UsageError is raised instead:
    nothing was drilled, so nothing is recorded)."""

    started: datetime
    clock: float
    result: T | None = None
    error: PgtoolError | None = None

    @classmethod
    def run(cls, drill: Callable[[], T]) -> Drilled[T]:
        drilled: Drilled[T] = cls(datetime.now(UTC), time.monotonic())
        try:
            drilled.result = drill()
        except UsageError:
            raise
        except PgtoolError as exc:
            drilled.error = exc
        return drilled

    def body(self, kind: str) -> dict[str, Any]:
        return _common(kind, self.started, time.monotonic() - self.clock)

    def outcome(self) -> T:
        """The result, once the record is written; or the drill's error, raised."""
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def still_there(directory: Path, error: PgtoolError | None, during: str) -> None:
    """A directory that vanished while its drill ran has nowhere to keep the record: fail instead."""
    if not Path(directory).is_dir():
        if error is not None:
            raise error
        raise OperationError(during)


def dump_body(
    dsn: str,
    drilled: Drilled[list[VerifyResult]],
    amcheck: bool,
    where: dict[str, Any],
    entry: Callable[[VerifyResult, bool], dict[str, Any]],
) -> dict[str, Any]:
    """The record of a dump drill; `where` names the dumps' place (a directory or a repository)."""
    error, results = drilled.error, drilled.result or []
    failed = [r for r in results if not r.ok]
    message = (
        error_line(error) if error is not None else "; ".join(f"{r.database}: {r.error}" for r in failed)
    )
    body = drilled.body("dump")
    body.update(
        outcome="passed" if error is None and results and not failed else "failed",
        error=message or None,
        **where,
        postgres_version=_restore_server_version(dsn) if error is None else None,
        amcheck=amcheck,
        databases=[entry(r, amcheck) for r in results],
    )
    return body


def base_body(
    drilled: Drilled[BaseDrillResult], amcheck: bool, where: dict[str, Any], backup: dict[str, Any] | None
) -> dict[str, Any]:
    """The record of a base drill; `where` names the backups' place (directories or a repository)."""
    body = drilled.body("base")
    body.update(
        outcome="passed" if drilled.error is None else "failed",
        error=error_line(drilled.error) if drilled.error is not None else None,
        **where,
        amcheck=amcheck,
        backup=backup,
    )
    if drilled.result is not None:
        body.update(_base_result_fields(drilled.result, amcheck))
    return body


def verify_dumps(
    dsn: str, backup_dir: Path, *, key_file: Path | None = None, **options: Unpack[VerifyOptions]
) -> list[VerifyResult]:
    """`pgtool.logical.verify_dumps.run_verify`, then one record of the whole run in the evidence log."""
    from pgtool.logical.verify_dumps import run_verify

    sign = signer(key_file)
    drilled = Drilled.run(lambda: run_verify(dsn, backup_dir, **options))
    still_there(backup_dir, drilled.error, f"backup directory {backup_dir} disappeared during verify")
    body = dump_body(dsn, drilled, options["amcheck"], {"backup_dir": str(backup_dir)}, _dump_entry)
    append_or_fail(lambda: log.append(Path(backup_dir) / EVIDENCE_DIR, body, sign), body["error"])
    return drilled.outcome()


def _restore_server_version(dsn: str) -> str | None:
    """The version of the server the dumps were restored into (None if it cannot be asked now)."""
    from pgtool.pg.conn import connect

    try:
        with connect(dsn, application_name="pgtool-verify") as conn:
            row = conn.execute("SELECT pg_catalog.current_setting('server_version')").fetchone()
    except Exception:  # evidence of a drill that ran is still worth more than no evidence
        return None
    return str(row[0]) if row else None


def _dump_entry(r: VerifyResult, amcheck: bool) -> dict[str, Any]:
    from pgtool.logical import dumps
    from pgtool.logical.dump_manifest import read_checksum, read_manifest

    entry: dict[str, Any] = {"database": r.database, "outcome": "passed" if r.ok else "failed"}
    if r.dump is not None:
        entry["dump"] = {
            "file": r.dump.name,
            "path": str(r.dump),
            "stamp": dumps.match_dump_file(r.dump),
            "sha256": read_checksum(dumps.checksum_path(r.dump)),
        }
        try:
            manifest = read_manifest(dumps.manifest_path(r.dump))
            entry["dump"]["source_server_version"] = manifest.get("server_version")
            entry["dump"]["pg_dump_version"] = manifest.get("pg_dump_version")
        except (PgtoolError, OSError):
            pass  # a missing manifest is the drill's finding, already in `error`
    if r.ok:
        entry["checks"] = [
            {"check": "manifest", "result": "passed"},
            {"check": "checksum", "result": "passed"},
            {"check": "toc", "result": "passed"},
            {"check": "restore", "result": "passed", "seconds": r.restore_seconds},
            {"check": "row_counts", "result": "passed", "tables": r.tables, "rows": r.rows},
            {"check": "amcheck", "result": "passed", "indexes": r.indexes_checked}
            if amcheck
            else {"check": "amcheck", "result": "not run"},
        ]
    else:
        # VerifyResult says which step failed only in its message; the steps run in order and stop there.
        entry["checks"] = [{"check": "drill", "result": "failed", "detail": r.error}]
    return entry


def verify_base(
    base_dir: Path,
    archive_dir: Path,
    *,
    pg_bindir: str | None,
    amcheck: bool,
    report: RunReport,
    key_file: Path | None = None,
    work_dir: Path | None = None,
) -> BaseDrillResult:
    """`pgtool.physical.base_drill.run_base_drill`, then its record in `<base_dir>/.evidence/`."""
    from pgtool.physical.base_drill import run_base_drill

    sign = signer(key_file)
    drilled = Drilled.run(
        lambda: run_base_drill(
            base_dir, archive_dir, pg_bindir=pg_bindir, amcheck=amcheck, report=report, work_dir=work_dir
        )
    )
    still_there(base_dir, drilled.error, f"base backup directory {base_dir} disappeared during the drill")
    where = {"base_dir": str(base_dir), "archive_dir": str(archive_dir)}
    body = base_body(drilled, amcheck, where, _base_backup_entry(Path(base_dir), drilled.result))
    append_or_fail(lambda: log.append(Path(base_dir) / EVIDENCE_DIR, body, sign), body["error"])
    return drilled.outcome()


def _base_backup_entry(base_dir: Path, result: BaseDrillResult | None) -> dict[str, Any] | None:
    """The drilled backup (or, when the drill failed early, the newest one, which it was about to drill)."""
    from pgtool.logical.dump_manifest import sha256_file
    from pgtool.physical import base_catalog

    backups = base_catalog.list_base_backups(base_dir)
    chosen = [b for b in backups if result is None or b.id == result.backup_id]
    if not chosen:
        return None
    b = chosen[-1]
    entry = backup_fields(b, path=str(b.path) if b.path else None)
    if b.path is not None:
        # backup_manifest lists every file's checksum and ends with its own: its SHA-256 pins the backup.
        try:
            entry["backup_manifest_sha256"] = sha256_file(b.path / base_catalog.MANIFEST_FILE)
        except OSError:
            entry["backup_manifest_sha256"] = None
    return entry


def backup_fields(b: BaseBackupInfo, **where: str | None) -> dict[str, Any]:
    """The drilled backup's entry: its id, `where` it is (a path or an object), its WAL range."""
    return {
        "id": b.id,
        **where,
        "start_lsn": b.start_lsn,
        "stop_lsn": b.stop_lsn,
        "start_wal_file": b.start_wal_file,
        "stop_wal_file": b.stop_wal_file,
        "timeline": b.timeline,
        "system_identifier": b.system_identifier,
        "source_server_version": b.server_version,
        "size_bytes": b.size_bytes,
    }


def _base_result_fields(result: BaseDrillResult, amcheck: bool) -> dict[str, Any]:
    """Everything the drill result exposes, by name (so fields it gains later are recorded too)."""
    from dataclasses import asdict

    data = asdict(result)
    checks: list[dict[str, Any]] = [
        {"check": "wal_files", "result": "passed", "detail": "restore-wal checked every segment's SHA-256"},
        {"check": "replay", "result": "passed", "replayed_to_lsn": data.get("replayed_to_lsn")},
        {"check": "queries", "result": "passed", "databases": data.get("databases_checked")},
        {"check": "amcheck", "result": "passed", "indexes": data.get("indexes_checked")}
        if amcheck
        else {"check": "amcheck", "result": "not run"},
    ]
    return {
        "postgres_version": data.get("server_version"),
        "wal": {
            "first_segment": data.get("archive_first_segment"),
            "last_segment": data.get("archive_last_segment"),
            "timeline": data.get("timeline"),
            "replayed_to_lsn": data.get("replayed_to_lsn"),
            # the verified recovery point: the last commit replayed (issue 19 part 2)
            "recovery_point_lsn": data.get("recovery_point_lsn"),
            "recovery_point_time": data.get("recovery_point_time"),
        },
        "durations": {
            k: data[k] for k in ("restore_seconds", "replay_seconds", "replay_duration_seconds") if k in data
        },
        "checks": checks,
        "drill": {k: v for k, v in data.items() if _jsonable(v)},
    }


def _jsonable(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool | list | dict)
