"""Backup repository (issue 17): one place for WAL, base backups and dumps on a local directory, S3 or
Azure, with a checksum on every object and optional client-side encryption. Never imports typer.

Entry point: `open_repository(url, key_file=..., create=...)` -> `Repository`. See docs/repository.md.

The names below load on first use (PEP 562): archive-wal imports this package once per WAL segment, and
a local repository must not pay for obstore, or for the modules only a cloud store needs.
"""

from __future__ import annotations

# Not typing.TYPE_CHECKING (typing is not loaded on the per-segment path). Mypy reads any constant of
# this name as true, and checks the names through these imports.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pgtool.repo.errors import (
        IntegrityError,
        ObjectAbsent,
        ObjectDiffers,
        RepoAbsent,
        RepoError,
        RepoKeyError,
        RepoUsageError,
        StoreUnavailable,
    )
    from pgtool.repo.layout import RECORD, base_prefix, decode_db, dump_prefix, encode_db, wal_name
    from pgtool.repo.objinfo import ObjectInfo
    from pgtool.repo.repository import KEY_FILE_ENV, REPO_ENV, Repository, open_repository
    from pgtool.repo.url import RepoURL, parse_repo_url

_WHERE = {
    "IntegrityError": "errors",
    "ObjectAbsent": "errors",
    "RepoAbsent": "errors",
    "ObjectDiffers": "errors",
    "RepoError": "errors",
    "RepoKeyError": "errors",
    "RepoUsageError": "errors",
    "StoreUnavailable": "errors",
    "RECORD": "layout",
    "base_prefix": "layout",
    "decode_db": "layout",
    "dump_prefix": "layout",
    "encode_db": "layout",
    "wal_name": "layout",
    "ObjectInfo": "objinfo",
    "KEY_FILE_ENV": "repository",
    "REPO_ENV": "repository",
    "Repository": "repository",
    "open_repository": "repository",
    "RepoURL": "url",
    "parse_repo_url": "url",
}

__all__ = [
    "KEY_FILE_ENV",
    "RECORD",
    "REPO_ENV",
    "IntegrityError",
    "ObjectAbsent",
    "ObjectDiffers",
    "ObjectInfo",
    "RepoAbsent",
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


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(__import__(f"pgtool.repo.{module}", fromlist=[name]), name)
    globals()[name] = value
    return value
