"""Where a new dump goes in a backup directory, and how it appears there: what `dumping` (custom format,
one file) and `dump_directory` (directory format, a folder of files) share.

pg_dump writes `DEST/<db>/.<db>-<stamp><suffix>.partial`; the store hashes and fsyncs it, then
`publish` writes the checksum (or list of checksums) and the manifest beside the final name and renames
the partial last, so a final-named dump always has both sidecars. A failure before the rename removes
the partial; after it, the database's directory is fsynced so the rename survives a crash.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pgtool.durable_write import fsync_path
from pgtool.logical import dumps
from pgtool.logical.dump_manifest import write_durably, write_manifest


def new_target(db_dir: Path, database: str, suffix: str = dumps.DUMP_SUFFIX) -> tuple[str, Path]:
    while True:  # a stamp nobody uses yet: a run within the same second as the last waits
        stamp = dumps.format_stamp(datetime.now(UTC))
        final = db_dir / f"{dumps.encode_name(database)}-{stamp}{suffix}"
        if not final.exists() and not dumps.partial_path(final).exists():
            return stamp, final
        time.sleep(0.2)


@contextlib.contextmanager
def new_dump(dest: Path, database: str, suffix: str) -> Iterator[tuple[str, Path, Path]]:
    """(stamp, final path, partial path) of a new dump of `database` in the backup directory `dest`.

    The body writes the partial and `publish`es it; if it raises, the partial (a file or a directory)
    is removed; if it returns, the database's directory is fsynced."""
    db_dir = dumps.database_dir(dest, database)
    db_dir.mkdir(parents=True, exist_ok=True)
    stamp, final = new_target(db_dir, database, suffix)
    partial = dumps.partial_path(final)
    try:
        yield stamp, final, partial
    except BaseException:
        if partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                partial.unlink()
        raise
    fsync_path(db_dir, directory=True)


def publish(partial: Path, final: Path, checksums: str, manifest: dict[str, Any]) -> None:
    """The `.sha256` (`checksums`: its text), then the manifest, then the rename to `final`; a manifest
    that cannot be written (full disk) takes the checksum file with it."""
    checksum = dumps.checksum_path(final)
    write_durably(checksum, checksums.encode())
    try:
        write_manifest(dumps.manifest_path(final), manifest)
    except BaseException:
        with contextlib.suppress(OSError):
            checksum.unlink()
        raise
    # The rename comes last: a final-named dump always has its checksum and manifest beside it.
    os.replace(partial, final)
