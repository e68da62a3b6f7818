"""Newest logical dump per database and its age, read from `pgtool backup`'s layout.

The layout and its listing belong to `pgtool.logical.dumps` (`DIR/<db>/<db>-<UTC stamp>.dump` with a
`.sha256` and a JSON manifest); a dump without its manifest is not complete and does not count.
Every database the server lets us connect to (what `pgtool backup` dumps) must have a fresh one.
With `--repo` (and no `--backup-dir`) the dumps are read from the repository (`logical.repo_catalog`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pgtool.logical.dumps import checksum_path, list_dumps
from pgtool.status.durations import format_bytes, format_duration
from pgtool.status.model import Section, Thresholds

DATABASES_SQL = """
SELECT datname FROM pg_database
WHERE NOT datistemplate AND datallowconn AND has_database_privilege(datname, 'CONNECT')
ORDER BY datname
"""


@dataclass(frozen=True)
class Newest:
    """The newest complete dump of one database, wherever it is kept."""

    name: str
    stamp: str
    finished_at: float
    size_bytes: int
    count: int
    checksum_file: bool | None  # a directory's .sha256 file; None in a repository (the manifest has it)


@dataclass(frozen=True)
class Expected:
    """What the dumps are held to, wherever they are kept: a dump of each of `databases` (the server's,
    minus `exclude`) no older than the thresholds' max_dump_age at `now` (default: the time of the check)."""

    databases: list[str]
    thresholds: Thresholds
    exclude: list[str] = field(default_factory=list)
    now: float | None = None


def dumps_section(backup_dir: Path | None, expected: Expected) -> Section:
    """Check that every expected database has a complete, fresh dump in `backup_dir`."""
    section = Section("dumps", "Dumps")
    if backup_dir is None:
        section.lines.append("not checked (pass --backup-dir or --repo)")
        return section.skip("pass --backup-dir or --repo to check logical dumps")
    backup_dir = Path(backup_dir)
    section.data["backup_dir"] = str(backup_dir)
    if not section.require_dir(
        backup_dir, "backup directory", "check --backup-dir, or run pgtool backup --dest DIR"
    ):
        return section
    found = {
        db: Newest(
            d[-1].path.name,
            d[-1].stamp,
            d[-1].finished_at,
            d[-1].size_bytes,
            len(d),
            checksum_path(d[-1].path).is_file(),
        )
        for db, d in list_dumps(backup_dir).items()
        if d
    }
    _report(section, found, str(backup_dir), expected)
    return section


def repo_dumps_section(repo_url: str, key_file: str | None, expected: Expected) -> Section:
    """The same check over the dumps in a backup repository (`logical.repo_catalog`, read only).

    A dump is complete when its manifest is listed; when it finished comes from that manifest (one
    read per database), else from its stamp.
    """
    from pgtool.logical import repo_catalog
    from pgtool.repo import RepoError, open_repository

    section = Section("dumps", "Dumps")
    try:
        repo = open_repository(repo_url, key_file=key_file, create=False)
        where = repo.url.display()
        section.data["repo"] = where
        found: dict[str, Newest] = {}
        for db in repo_catalog.databases(repo):
            complete = repo_catalog.complete_dumps(repo, db)
            if not complete:
                continue
            newest = complete[-1]
            manifest = repo_catalog.read_json(repo, newest.manifest_object) or {}
            found[db] = Newest(
                newest.stamp,
                newest.stamp,
                _finished(manifest, newest.taken_at.timestamp()),
                newest.size_bytes,
                len(complete),
                None,
            )
    except RepoError as exc:
        section.problem(
            f"cannot read the repository's dumps: {exc}",
            getattr(exc, "hint", None) or "check --repo, the store's credentials and --repo-key-file",
        )
        return section
    _report(section, found, where, expected)
    return section


def _finished(manifest: dict[str, object], stamp_time: float) -> float:
    value = manifest.get("finished_at")
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            pass
    return stamp_time


def _report(section: Section, found: dict[str, Newest], where: str, expected: Expected) -> None:
    now = time.time() if expected.now is None else expected.now
    thresholds = expected.thresholds
    wanted = [d for d in expected.databases if d not in set(expected.exclude)]
    rows: list[dict[str, object]] = []
    width = max((len(d) for d in [*wanted, *found]), default=8)
    for db in sorted(set(wanted) | set(found)):
        newest = found.get(db)
        if newest is None:
            rows.append({"database": db, "newest": None, "count": 0})
            section.lines.append(f"{db:<{width}}  no dump")
            section.problem(
                f"database {db} has no complete dump in {where}",
                "run pgtool backup (or --exclude-database it here if it is not meant to be dumped)",
            )
            continue
        age = now - newest.finished_at
        row: dict[str, object] = {
            "database": db,
            "count": newest.count,
            "newest": newest.name,
            "finished_at": datetime.fromtimestamp(newest.finished_at, UTC).isoformat(),
            "age_seconds": round(age, 1),
            "size_bytes": newest.size_bytes,
            "on_server": db in wanted,
        }
        if newest.checksum_file is not None:
            row["checksum_file"] = newest.checksum_file
        rows.append(row)
        gone = "" if db in wanted else "  (database not on the server)"
        section.lines.append(
            f"{db:<{width}}  {newest.stamp}  {format_duration(age)} ago  {format_bytes(newest.size_bytes)}"
            f"  ({newest.count} kept){gone}"
        )
        if db not in wanted:
            continue
        if age > thresholds.max_dump_age:
            section.problem(
                f"newest dump of {db} is {format_duration(age)} old "
                f"(limit {format_duration(thresholds.max_dump_age)})",
                "check the backup CronJob's last runs and logs, then run pgtool backup",
            )
        if newest.checksum_file is False:
            section.problem(
                f"newest dump of {db} has no checksum file ({newest.name}.sha256)",
                "run pgtool backup again; never trust a dump whose checksum is missing",
            )
    if not rows:
        section.lines.append("no databases and no dumps")
    section.data["databases"] = rows
