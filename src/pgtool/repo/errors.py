"""Errors of the backup repository, all `pgtool.errors` exceptions with one line naming object and store.

`ObjectAbsent` is the one error that means "this name holds nothing": `restore-wal` maps it to exit 1
(PostgreSQL then ends recovery), and everything else to 126 or more. A missing bucket, a missing
repository record, a timeout or a checksum mismatch are never `ObjectAbsent`.
"""

from __future__ import annotations

from pgtool.errors import OperationError, UsageError


class RepoError(OperationError):
    """The store was reached (or not) and the operation failed: never "absent"."""


class RepoUsageError(UsageError):
    """A malformed `--repo` URL or key file option: nothing was attempted."""


class ObjectAbsent(RepoError):
    """The repository exists and holds no object under this name."""


class ObjectDiffers(RepoError):
    """A conditional create found a different object already stored under the name."""


class IntegrityError(RepoError):
    """An object failed its checksum or authentication: tampered, truncated or rotten."""


class RepoKeyError(RepoError):
    """The repository key is missing, wrong, or given for a repository that is not encrypted."""


class RepoAbsent(RepoError):
    """The store answered, and holds no pgtool repository at that location (no record)."""


class StoreUnavailable(RepoError):
    """The store could not be reached, refused the credentials, or the bucket/container is missing."""
