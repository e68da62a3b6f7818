"""The end of the WAL archive as an LSN: the start of the last complete record it holds.

`recover` without a target sets `recovery_target_lsn` to this LSN (inclusive). Without an explicit
target PostgreSQL ends recovery at the first segment restore_command does not return, and promotes:
a segment missing in the middle then silently loses everything after it. With the target, PostgreSQL
refuses to promote before reaching it ("recovery ended before configured recovery target was reached").

The last record is found with pg_waldump on a verified copy of the archive's last segment (restored by
`pgtool.recovery.wal_source` from the directory or the repository, so its checksum and header are
checked first). A record continuing into a
segment not yet archived is not complete, so it is not the end.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from pgtool.errors import OperationError
from pgtool.physical.base_catalog import BaseBackupInfo
from pgtool.recovery.wal_source import WalArchive, as_archive
from pgtool.wal.names import parse_lsn

_LSN = re.compile(r"\blsn: ([0-9A-F]+/[0-9A-F]+),")


def last_record_lsn(
    archive_dir: Path | WalArchive, segment: str, pg_waldump: str, *, allow_unverified: bool = False
) -> int:
    """The LSN of the last complete WAL record in archived `segment` (OperationError if none)."""
    from pgtool.pg import command

    with tempfile.TemporaryDirectory(prefix="pgtool-walend-") as tmp:
        copy = Path(tmp) / segment
        try:
            as_archive(archive_dir).fetch(segment, copy, allow_unverified=allow_unverified)
        except OperationError as exc:
            raise OperationError(f"cannot read the archive's last segment: {exc.message}") from None
        # pg_waldump stops with an error at the end of the readable WAL: that is expected here.
        proc = command.run(
            [pg_waldump, str(copy)],
            capture_stdout=True,
            check=False,
            log_stderr_level="debug",
            what="pg_waldump",
        )
    found = None
    for found in _LSN.finditer(proc.stdout or ""):  # noqa: B007 - the last match is the one wanted
        pass
    if found is None:
        raise OperationError(
            f"no complete WAL record in {segment}, the archive's last segment",
            hint="wait for the archiver, or recover to an explicit target",
        )
    return parse_lsn(found.group(1))


def end_target(
    archive_dir: Path | WalArchive,
    backup: BaseBackupInfo,
    last_segment: str,
    pg_waldump: str,
    *,
    allow_unverified: bool = False,
) -> str | None:
    """The LSN (text) recovery of `backup` must reach: the archive's last complete record.

    None when the archive's last segment is not archived (the archive ends inside the backup's own
    WAL, which the backup carries) or ends before the backup does.
    """
    from pgtool.wal.listing import format_lsn

    if not as_archive(archive_dir).has(last_segment):
        return None
    end = last_record_lsn(archive_dir, last_segment, pg_waldump, allow_unverified=allow_unverified)
    if end < parse_lsn(backup.stop_lsn):
        return None
    return format_lsn(end)
