"""What an archive-wal call did (stdlib only, no other import): its own module because a call that only
confirms a segment uploaded ahead (`pgtool.wal.ahead_marks`) reports one without loading the archive
directory's code (checksums, codecs), about 3 ms of its start-up."""

from __future__ import annotations

ARCHIVED = "archived"
ALREADY_ARCHIVED = "already archived"


class ArchiveResult:
    """What archive_wal did: outcome (ARCHIVED or ALREADY_ARCHIVED), the archived path and sizes."""

    __slots__ = (
        "bytes_in",
        "bytes_stored",
        "outcome",
        "path",
        "removed_temporaries",
        "system_identifier",
        "uploader_started",
        "waited_s",
    )

    def __init__(
        self,
        outcome: str,
        path: str,
        bytes_in: int,
        bytes_stored: int,
        system_identifier: int | None,
        removed_temporaries: list[str],
    ) -> None:
        self.outcome = outcome
        self.path = path
        self.bytes_in = bytes_in
        self.bytes_stored = bytes_stored
        self.system_identifier = system_identifier
        self.removed_temporaries = removed_temporaries
        self.uploader_started = False  # this call started the uploader running ahead (repository only)
        self.waited_s = 0.0  # how long it waited for the uploader's upload of its segment
