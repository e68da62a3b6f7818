"""`--repo` URL parsing: a local path or file:///..., s3://BUCKET/PREFIX, azure://CONTAINER/PREFIX.

Credentials never come from the URL (it lands in argv, logs and process listings): a URL carrying a
user, password or query string is refused. They come from each cloud's standard environment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pgtool.repo.errors import RepoUsageError

# S3 bucket names (3-63 chars, lowercase, digits, dots, hyphens) and Azure container names
# (3-63, lowercase, digits, hyphens): checked here so a typo fails before any request.
_S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_AZ_CONTAINER = re.compile(r"^(\$root|[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62})$")


@dataclass(frozen=True)
class RepoURL:
    """A parsed repository location. `kind` is "local", "s3" or "azure"."""

    kind: str
    bucket: str = ""  # S3 bucket or Azure container; empty for local
    prefix: str = ""  # key prefix inside the bucket, no leading or trailing slash
    path: Path | None = None  # local directory

    def display(self) -> str:
        """The location as shown in messages (holds no secret: URLs never carry one)."""
        if self.kind == "local":
            return str(self.path)
        tail = f"/{self.prefix}" if self.prefix else ""
        return f"{self.kind}://{self.bucket}{tail}"


def _clean_prefix(raw: str, url: str) -> str:
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
        return RepoURL(kind="local", path=Path(text).expanduser().absolute())
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
        return RepoURL(kind="local", path=Path(unquote(parts.path)).absolute())
    if scheme in ("s3", "azure"):
        bucket = parts.netloc
        pattern = _S3_BUCKET if scheme == "s3" else _AZ_CONTAINER
        if not pattern.match(bucket):
            what = "bucket" if scheme == "s3" else "container"
            raise RepoUsageError(f"--repo {url!r}: {bucket!r} is not a valid {what} name")
        return RepoURL(kind=scheme, bucket=bucket, prefix=_clean_prefix(parts.path, url))
    raise RepoUsageError(
        f"--repo {url!r}: unsupported scheme {parts.scheme!r}",
        hint="use a directory, file:///dir, s3://BUCKET/PREFIX or azure://CONTAINER/PREFIX",
    )
