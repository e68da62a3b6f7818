"""`--repo` URL parsing: a local path or file:///..., s3://BUCKET/PREFIX, azure://CONTAINER/PREFIX.

Credentials never come from the URL (it lands in argv, logs and process listings): a URL carrying a
user, password or query string is refused. They come from each cloud's standard environment.
"""

from __future__ import annotations

import os

from pgtool.repo.errors import RepoUsageError

# Not typing.TYPE_CHECKING: archive-wal parses a local --repo once per segment, and this module loads no
# dataclasses, pathlib or urllib.parse for that (only a URL with a scheme imports urllib.parse). Mypy
# reads any constant of this name as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

# S3 bucket names (3-63 chars, lowercase, digits, dots, hyphens) and Azure container names
# (3-63, lowercase, digits, hyphens): checked here so a typo fails before any request.
_S3_BUCKET = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
_AZ_CONTAINER = r"^(\$root|[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62})$"


class RepoURL:
    """A parsed repository location (immutable). `kind` is "local", "s3" or "azure"; `bucket` the S3
    bucket or Azure container (empty for local); `prefix` the key prefix inside it, no leading or
    trailing slash; `local_dir` the absolute local directory (empty for the clouds)."""

    __slots__ = ("bucket", "kind", "local_dir", "prefix")
    kind: str
    bucket: str
    prefix: str
    local_dir: str

    def __init__(
        self, kind: str, bucket: str = "", prefix: str = "", path: str | os.PathLike[str] | None = None
    ) -> None:
        for attr, value in (
            ("kind", kind),
            ("bucket", bucket),
            ("prefix", prefix),
            ("local_dir", "" if path is None else os.fspath(path)),
        ):
            object.__setattr__(self, attr, value)

    def __setattr__(self, attr: str, value: object) -> None:
        raise AttributeError(f"RepoURL is immutable ({attr})")

    def _key(self) -> tuple[str, str, str, str]:
        return (self.kind, self.bucket, self.prefix, self.local_dir)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RepoURL) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __reduce__(self) -> tuple[type[RepoURL], tuple[str, str, str, str | None]]:
        return RepoURL, (self.kind, self.bucket, self.prefix, self.local_dir or None)

    def __repr__(self) -> str:
        fields = f"kind={self.kind!r}, bucket={self.bucket!r}, prefix={self.prefix!r}"
        return f"RepoURL({fields}, path={self.local_dir!r})"

    @property
    def path(self) -> Path | None:
        """The local directory as a Path (None for the clouds); pathlib is imported only here."""
        if not self.local_dir:
            return None
        from pathlib import Path

        return Path(self.local_dir)

    def display(self) -> str:
        """The location as shown in messages (holds no secret: URLs never carry one)."""
        if self.kind == "local":
            return self.local_dir
        tail = f"/{self.prefix}" if self.prefix else ""
        return f"{self.kind}://{self.bucket}{tail}"


def _clean_prefix(raw: str, url: str) -> str:
    from urllib.parse import unquote

    prefix = unquote(raw).strip("/")
    parts = prefix.split("/") if prefix else []
    if any(p in ("", ".", "..") for p in parts):
        raise RepoUsageError(f"--repo {url!r}: the prefix has an empty, '.' or '..' segment")
    return prefix


def parse_repo_url(url: str) -> RepoURL:
    """Parse `--repo`; raises RepoUsageError (exit 2) on anything malformed."""
    text = url.strip()
    if not text:
        raise RepoUsageError(
            "--repo is empty", hint="give a directory, s3://BUCKET/PREFIX or azure://CONTAINER/PREFIX"
        )
    if "://" not in text:
        return RepoURL(kind="local", path=os.path.abspath(os.path.expanduser(text)))
    from urllib.parse import unquote, urlsplit

    try:
        parts = urlsplit(text)
        credentials = parts.username or parts.password
    except ValueError:  # an unbalanced [ or ]: its message quotes nothing, but the URL may hold a secret
        raise RepoUsageError(
            "--repo: not a valid URL", hint="s3://BUCKET/PREFIX or azure://CONTAINER/PREFIX"
        ) from None
    scheme = parts.scheme.lower()
    if credentials or parts.query or parts.fragment:
        raise RepoUsageError(
            f"--repo {parts.scheme}://{parts.hostname or ''}...: credentials, queries and fragments are not "
            "accepted in the URL",
            hint="credentials come from the environment (AWS_* or AZURE_STORAGE_*)",
        )
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise RepoUsageError(f"--repo {url!r}: file URLs name a local path (file:///dir)")
        return RepoURL(kind="local", path=os.path.abspath(unquote(parts.path)))
    if scheme in ("s3", "azure"):
        bucket = parts.netloc
        import re

        if not re.match(_S3_BUCKET if scheme == "s3" else _AZ_CONTAINER, bucket):
            what = "bucket" if scheme == "s3" else "container"
            raise RepoUsageError(f"--repo {url!r}: {bucket!r} is not a valid {what} name")
        return RepoURL(kind=scheme, bucket=bucket, prefix=_clean_prefix(parts.path, url))
    raise RepoUsageError(
        f"--repo {url!r}: unsupported scheme {parts.scheme!r}",
        hint="use a directory, file:///dir, s3://BUCKET/PREFIX or azure://CONTAINER/PREFIX",
    )
