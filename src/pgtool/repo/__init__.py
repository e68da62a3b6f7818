"""Backup repository (issue 17): one place for WAL, base backups and dumps on a local directory, S3 or
Azure, with a checksum on every object and optional client-side encryption. Never imports typer.

Entry point: `open_repository(url, key_file=..., create=...)` -> `Repository`. See docs/repository.md.
"""

from pgtool.repo.errors import (
    IntegrityError,
    ObjectAbsent,
    ObjectDiffers,
    RepoError,
    RepoKeyError,
    RepoUsageError,
    StoreUnavailable,
)
from pgtool.repo.layout import RECORD, base_prefix, decode_db, dump_prefix, encode_db, wal_name
from pgtool.repo.repository import KEY_FILE_ENV, REPO_ENV, Repository, open_repository
from pgtool.repo.store import ObjectInfo
from pgtool.repo.url import RepoURL, parse_repo_url

__all__ = [
    "KEY_FILE_ENV",
    "RECORD",
    "REPO_ENV",
    "IntegrityError",
    "ObjectAbsent",
    "ObjectDiffers",
    "ObjectInfo",
    "RepoError",
    "RepoKeyError",
    "RepoURL",
    "RepoUsageError",
    "Repository",
    "StoreUnavailable",
    "base_prefix",
    "decode_db",
    "dump_prefix",
    "encode_db",
    "open_repository",
    "parse_repo_url",
    "wal_name",
]
