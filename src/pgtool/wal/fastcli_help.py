"""The argparse command line of archive-wal and restore-wal: their --help, and the parser for any
command line `pgtool.wal.fastcli._quick_parse` declines. Imported only then (argparse costs ~10 ms
of the per-segment path), stdlib only like the rest of `pgtool.wal`."""

from __future__ import annotations

import argparse
from typing import NoReturn

from pgtool.wal.fastcli import ARCHIVE_DIR_ENV, REPO_ENV, REPO_KEY_FILE_ENV

ARCHIVE_EPILOG = """\
example (postgresql.conf):
  archive_mode = on
  archive_command = '/opt/pgtool-venv/bin/pgtool archive-wal %p %f --repo s3://bucket/prod'
  (credentials from the server's environment: AWS_* or AZURE_STORAGE_*; see docs/repository.md)
  archive_command = '/opt/pgtool-venv/bin/pgtool archive-wal %p %f --archive-dir /wal-archive'

exit codes: 0 archived (or already archived with identical content); 1 failed, nothing changed
(PostgreSQL retries); 2 bad usage. Never above 125, so pg_stat_archiver counts every failure.
"""

RESTORE_EPILOG = """\
example (postgresql.conf, or what `pgtool recover` writes):
  restore_command = '/opt/pgtool-venv/bin/pgtool restore-wal %f %p --repo s3://bucket/prod'

Every file is checked before DEST_PATH appears: the checksum archive-wal recorded (in a repository, the
object's own checksum or authentication; in an archive directory, NAME.sha256), and a segment's page
header against its name (page address, timeline) and the archive's system identifier.

exit codes: 0 restored; 1 not in the archive (normal: PostgreSQL asks for files that do not exist);
126 a real error (bad usage, archive or repository missing or unreachable, a timeout, checksum or header
mismatch, a file without a checksum record, a missing or wrong key, corrupt or truncated file, cannot
write DEST_PATH), so recovery stops instead of ending early.
"""


def build_parser(command: str, usage_error: type[Exception]) -> argparse.ArgumentParser:
    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:  # one line, our exit code, no usage dump
            raise usage_error(message)

    dir_help = f"A WAL archive directory (default: ${ARCHIVE_DIR_ENV}). It must exist. Give this or --repo."
    repo_help = (
        f"The backup repository (default: ${REPO_ENV}): a directory, s3://BUCKET/PREFIX or "
        "azure://CONTAINER/PREFIX; WAL goes to wal/<timeline>/<name>. Credentials from the "
        "environment (AWS_*, AZURE_STORAGE_*). Give this or --archive-dir."
    )
    archiving = command == "archive-wal"
    parser = Parser(
        prog=f"pgtool {command}",
        description=(
            "Archive one WAL file durably (what archive_command calls): copy to a temporary "
            "in the archive, fsync, link to its name, fsync the directory. Never overwrites; an identical "
            "copy already archived is success, a different one is an error. Segments from another "
            "database system (page header system identifier) are refused."
            if archiving
            else "Restore one WAL file from the archive (what restore_command calls), "
            "decompressing and checking it, and writing DEST_PATH durably (temporary, fsync, rename)."
        ),
        epilog=ARCHIVE_EPILOG if archiving else RESTORE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if archiving:
        parser.add_argument("wal_path", metavar="WAL_PATH", help="Path of the file to archive (%%p).")
        parser.add_argument("wal_name", metavar="WAL_NAME", help="Its WAL file name (%%f).")
    else:
        parser.add_argument("wal_name", metavar="WAL_NAME", help="The WAL file name to restore (%%f).")
        parser.add_argument("dest_path", metavar="DEST_PATH", help="Where to write it (%%p).")
    # after the positionals: a usage error names the missing arguments in this order
    parser.add_argument("--archive-dir", default=None, help=dir_help)
    parser.add_argument("--repo", default=None, help=repo_help)
    parser.add_argument(
        "--repo-key-file",
        default=None,
        help=f"Key file of an encrypted repository (default: ${REPO_KEY_FILE_ENV}); its content is the key.",
    )
    if archiving:
        parser.add_argument(
            "--compress",
            choices=("none", "zstd", "lz4"),
            default=None,
            help="Archive directory: store compressed (NAME.zst / NAME.lz4; default none); restore-wal and "
            "the duplicate check read any form. Repository: zstd (the default) or none.",
        )
        parser.add_argument(
            "--compress-level", type=int, default=None, help="Codec level (zstd default 1, lz4 default 0)."
        )
        parser.add_argument(
            "--ahead",
            type=int,
            default=None,
            help="Repository only: when more segments are ready, start one uploader that uploads them "
            "this many at a time; their own calls then just confirm them against its markers in "
            "pg_wal/.pgtool-ahead (default: 8 for s3:// and azure://, 0 for a local repository; 0 "
            "turns it off). Never reports a segment archived before the store acknowledged it; "
            "never touches archive_status.",
        )
        parser.add_argument(
            "--allow-system-id-change",
            action="store_true",
            help="Accept a segment from a different database system and record its identifier as the "
            "archive's (after a new initdb or pg_upgrade replaced the cluster).",
        )
    else:
        parser.add_argument(
            "--prefetch",
            type=int,
            default=None,
            help="Repository only: keep up to this many following segments of the timeline fetched "
            "in parallel and verified into pg_wal/.pgtool-prefetch (default: 8 for s3:// and azure://, "
            "0 for a local repository; 0 turns it off).",
        )
        parser.add_argument(
            "--allow-unverified",
            action="store_true",
            help="Restore a file that has no checksum record (archived by a pgtool that did not record "
            "them), still checking its page header; logged as a warning. Without it such a file is an "
            "error (126). Never needed for files this pgtool archived.",
        )
    return parser
