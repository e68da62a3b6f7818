"""Newest logical dump per database and its age, read from `pgtool backup`'s layout.

The layout and its listing belong to `pgtool.logical.dumps` (`DIR/<db>/<db>-<UTC stamp>.dump` with a
`.sha256` and a JSON manifest); a dump without its manifest is not complete and does not count.
Every database the server lets us connect to (what `pgtool backup` dumps) must have a fresh one.
"""

from __future__ import annotations

import time
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


def dumps_section(
    backup_dir: Path | None,
    databases: list[str],
    thresholds: Thresholds,
    *,
    exclude: list[str] | None = None,
    now: float | None = None,
) -> Section:
    """Check that every database in `databases` (minus `exclude`) has a complete, fresh dump."""
    section = Section("dumps", "Dumps")
    if backup_dir is None:
        section.lines.append("not checked (pass --backup-dir)")
        return section.skip("pass --backup-dir to check logical dumps")
    now = time.time() if now is None else now
    backup_dir = Path(backup_dir)
    section.data["backup_dir"] = str(backup_dir)
    if not section.require_dir(
        backup_dir, "backup directory", "check --backup-dir, or run pgtool backup --dest DIR"
    ):
        return section
    found = list_dumps(backup_dir)
    wanted = [d for d in databases if d not in set(exclude or [])]
    rows: list[dict[str, object]] = []
    width = max((len(d) for d in [*wanted, *found]), default=8)
    for db in sorted(set(wanted) | set(found)):
        dumps = found.get(db, [])
        if not dumps:
            rows.append({"database": db, "newest": None, "count": 0})
            section.lines.append(f"{db:<{width}}  no dump")
            section.problem(
                f"database {db} has no complete dump in {backup_dir}",
                "run pgtool backup (or --exclude-database it here if it is not meant to be dumped)",
            )
            continue
        newest = dumps[-1]
        age = now - newest.finished_at
        has_checksum = checksum_path(newest.path).is_file()
        rows.append(
            {
                "database": db,
                "count": len(dumps),
                "newest": newest.path.name,
                "finished_at": datetime.fromtimestamp(newest.finished_at, UTC).isoformat(),
                "age_seconds": round(age, 1),
                "size_bytes": newest.size_bytes,
                "checksum_file": has_checksum,
                "on_server": db in wanted,
            }
        )
        gone = "" if db in wanted else "  (database not on the server)"
        section.lines.append(
            f"{db:<{width}}  {newest.stamp}  {format_duration(age)} ago  {format_bytes(newest.size_bytes)}"
            f"  ({len(dumps)} kept){gone}"
        )
        if db not in wanted:
            continue
        if age > thresholds.max_dump_age:
            section.problem(
                f"newest dump of {db} is {format_duration(age)} old "
                f"(limit {format_duration(thresholds.max_dump_age)})",
                "check the backup CronJob's last runs and logs, then run pgtool backup",
            )
        if not has_checksum:
            section.problem(
                f"newest dump of {db} has no checksum file ({checksum_path(newest.path).name})",
                "run pgtool backup again; never trust a dump whose checksum is missing",
            )
    if not rows:
        section.lines.append("no databases and no dumps")
    section.data["databases"] = rows
    return section
