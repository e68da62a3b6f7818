"""The raw object store under an S3 or Azure repository: obstore (Rust's object_store).

Why obstore: `archive-wal` runs once per WAL segment and obstore imports in about 10 ms (boto3: 250 ms
and S3 only). A local repository goes through `pgtool.repo.localfs` instead (stdlib only, the same
files); this class still opens one through obstore's LocalStore, which the tests use to show that both
read what the other wrote. This module only moves bytes and maps the library's errors onto
`pgtool.repo.errors`; framing, checksums and encryption live in `objformat`. Every message names the
object and the store, and is scrubbed of the secrets the environment holds (a SAS token can appear
in a request URL).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

import obstore
from obstore import exceptions as obx
from obstore.store import AzureStore, LocalStore, S3Store

from pgtool.repo.errors import ObjectAbsent, RepoError, StoreUnavailable
from pgtool.repo.objinfo import ObjectInfo
from pgtool.repo.url import RepoURL

if TYPE_CHECKING:
    # obstore's config TypedDicts exist only in its stubs (not importable at runtime).
    from obstore.store import AzureConfig, ClientConfig, RetryConfig, S3Config

_SECRET_ENV = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_MASTER_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_TOKEN",
)
# Markers of a missing bucket or container: S3 and Azure answer 404 for those too, and they must never
# read as "this WAL file is absent" (restore-wal would end recovery early).
_MISSING_CONTAINER = (
    "NoSuchBucket",
    "ContainerNotFound",
    "bucket does not exist",
    "container does not exist",
)
MULTIPART_CHUNK = 8 * 1024 * 1024

# Environment variables read into the obstore config: (variable, S3Config / AzureConfig key). Later
# entries win when several are set for one key.
_S3_ENV: tuple[
    tuple[
        str,
        Literal[
            "access_key_id",
            "secret_access_key",
            "session_token",
            "region",
            "default_region",
            "endpoint",
            "web_identity_token_file",
            "role_arn",
        ],
    ],
    ...,
] = (
    ("AWS_ACCESS_KEY_ID", "access_key_id"),
    ("AWS_SECRET_ACCESS_KEY", "secret_access_key"),
    ("AWS_SESSION_TOKEN", "session_token"),
    ("AWS_REGION", "region"),
    ("AWS_DEFAULT_REGION", "default_region"),
    ("AWS_ENDPOINT_URL", "endpoint"),
    ("AWS_WEB_IDENTITY_TOKEN_FILE", "web_identity_token_file"),
    ("AWS_ROLE_ARN", "role_arn"),
)
_AZURE_ENV: tuple[
    tuple[
        str,
        Literal[
            "account_name",
            "account_key",
            "sas_key",
            "endpoint",
            "federated_token_file",
            "client_id",
            "tenant_id",
        ],
    ],
    ...,
] = (
    ("AZURE_STORAGE_ACCOUNT_NAME", "account_name"),
    ("AZURE_STORAGE_ACCOUNT_KEY", "account_key"),
    ("AZURE_STORAGE_SAS_TOKEN", "sas_key"),
    ("AZURE_STORAGE_SAS_KEY", "sas_key"),
    ("AZURE_STORAGE_ENDPOINT", "endpoint"),
    ("AZURE_FEDERATED_TOKEN_FILE", "federated_token_file"),
    ("AZURE_CLIENT_ID", "client_id"),
    ("AZURE_TENANT_ID", "tenant_id"),
)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


class Store:
    """Byte-level operations on one repository location; see `pgtool.repo.repository` for the contract."""

    def __init__(
        self,
        url: RepoURL,
        *,
        environ: Mapping[str, str] | None = None,
        max_retries: int = 4,
        retry_timeout: float = 60.0,
        timeout: float = 300.0,
    ) -> None:
        env = os.environ if environ is None else environ
        self.url = url
        self._max_retries = max_retries
        self._retry_timeout = retry_timeout
        self._secrets = [v for k in _SECRET_ENV if (v := env.get(k, "")) and len(v) >= 4]
        retry: RetryConfig = {
            "max_retries": max_retries,
            "retry_timeout": timedelta(seconds=retry_timeout),
            "backoff": {
                "init_backoff": timedelta(milliseconds=100),
                "max_backoff": timedelta(seconds=5),
                "base": 2,
            },
        }
        client: ClientConfig = {
            "connect_timeout": timedelta(seconds=10),
            "timeout": timedelta(seconds=timeout),
        }
        self._store: LocalStore | S3Store | AzureStore
        try:
            if url.kind == "local":
                assert url.path is not None
                self._store = LocalStore(prefix=url.path, mkdir=True)
            elif url.kind == "s3":
                self._store = self._s3(env, client, retry)
            else:
                self._store = self._azure(env, client, retry)
        except obx.BaseError as exc:
            raise StoreUnavailable(f"cannot configure store {url.display()}: {self._scrub(exc)}") from None
        except OSError as exc:
            raise StoreUnavailable(f"cannot use directory {url.display()}: {exc.strerror}") from None

    def _s3(self, env: Mapping[str, str], client: ClientConfig, retry: RetryConfig) -> S3Store:
        config: S3Config = {}
        # Read the standard AWS variables ourselves so that `environ` is the whole truth (tests, and a
        # caller that scrubbed its environment); obstore would also read os.environ on its own.
        for var, key in _S3_ENV:
            if env.get(var):
                config[key] = env[var]
        if "endpoint" in config:
            config["virtual_hosted_style_request"] = (
                False  # custom endpoints (MinIO, moto, Ceph) are path-style
            )
        if "region" not in config and "default_region" not in config:
            config["region"] = "us-east-1"
        options = client.copy()
        options["allow_http"] = _truthy(env.get("AWS_ALLOW_HTTP"))
        return S3Store(self.url.bucket, config=config, **self._common(options, retry))

    def _azure(self, env: Mapping[str, str], client: ClientConfig, retry: RetryConfig) -> AzureStore:
        config: AzureConfig = {}
        for var, key in _AZURE_ENV:
            if env.get(var):
                config[key] = env[var]
        options = client.copy()
        options["allow_http"] = config.get("endpoint", "").startswith("http://")
        return AzureStore(self.url.bucket, config=config, **self._common(options, retry))

    def _common(self, options: ClientConfig, retry: RetryConfig) -> dict[str, Any]:
        """What both cloud stores are built with: the prefix, the client options, the retry policy."""
        return {"prefix": self.url.prefix or None, "client_options": options, "retry_config": retry}

    # -- error mapping -------------------------------------------------------------------------------

    def _scrub(self, exc: BaseException) -> str:
        text = " ".join(str(exc).split("Debug source:")[0].split())  # the debug dump repeats it at length
        for secret in self._secrets:
            text = text.replace(secret, "***")
        text = re.sub(r"(https?://[^\s?]*)\?[^\s\"']*", r"\1?…", text)  # SAS signatures live in URL queries
        text = re.sub(r"(?i)(signature|sig|credential)=[^\s,&\"']+", r"\1=***", text)
        return text[:300]

    @property
    def backend(self) -> object:
        """The underlying obstore store (the tests use it to damage objects behind pgtool's back)."""
        return self._store

    def where(self, name: str) -> str:
        base = self.url.display().rstrip("/")
        return f"{name} in {base}"

    def _map(self, exc: BaseException, name: str, action: str) -> RepoError:
        reason = self._scrub(exc)
        where = self.where(name)
        if isinstance(exc, (obx.NotFoundError, FileNotFoundError)):
            if any(marker.lower() in str(exc).lower() for marker in _MISSING_CONTAINER):
                return StoreUnavailable(
                    f"cannot {action} {where}: the bucket or container does not exist",
                    hint="create it, or check --repo",
                )
            return ObjectAbsent(f"{where} does not exist")
        if isinstance(exc, (obx.PermissionDeniedError, obx.UnauthenticatedError)):
            return StoreUnavailable(
                f"cannot {action} {where}: access denied ({reason})",
                hint="check the credentials in AWS_* or AZURE_STORAGE_* and the bucket policy",
            )
        if isinstance(exc, OSError):
            return StoreUnavailable(f"cannot {action} {where}: {exc.strerror or reason}")
        return StoreUnavailable(f"cannot {action} {where}: {reason}")

    # -- operations ----------------------------------------------------------------------------------

    def create(self, name: str, data: bytes) -> bool:
        """Store `data` under `name` only if nothing is there (one conditional request, If-None-Match: *
        on the clouds, link-without-replace locally). True if created, False if something already was.

        obstore does not retry a conditional PUT whose connection broke (it is not idempotent to it),
        so a transient failure is retried here, within the retry budget: the retry either creates the
        object or finds one, maybe our own from the attempt whose answer was lost, and returns False;
        the caller then compares content, which is what makes the retry safe."""
        deadline = time.monotonic() + self._retry_timeout
        backoff = 0.1
        for attempt in range(self._max_retries + 1):
            try:
                obstore.put(self._store, name, data, mode="create", use_multipart=False)
            except (obx.AlreadyExistsError, obx.PreconditionError, FileExistsError):
                return False
            except (obx.BaseError, OSError) as exc:
                mapped = self._map(exc, name, "write")
                if (
                    not self._transient(exc)
                    or attempt >= self._max_retries
                    or time.monotonic() + backoff > deadline
                ):
                    raise mapped from None
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self._sync_local(name)
            return True
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _transient(self, exc: BaseException) -> bool:
        """A failure that a retry may cure: a broken connection, a timeout, a 5xx. Not a denial, a
        missing bucket, or anything on a local filesystem."""
        if self.url.kind == "local" or not isinstance(exc, obx.GenericError):
            return False
        text = str(exc).lower()
        return not any(marker.lower() in text for marker in _MISSING_CONTAINER)

    def put_stream(self, name: str, chunks: Iterable[bytes]) -> None:
        """Multipart upload: the object appears under `name` only when the last part is committed."""
        try:
            obstore.put(
                self._store,
                name,
                iter(chunks),
                use_multipart=True,
                chunk_size=MULTIPART_CHUNK,
                max_concurrency=4,
            )
        except (obx.BaseError, OSError) as exc:
            raise self._map(exc, name, "write") from None
        self._sync_local(name)

    def tail(self, name: str, length: int) -> tuple[int, bytes] | None:
        """(size, last `length` bytes) of the object stored under `name`, None if nothing is there."""
        info = self.head(name)
        if info is None:
            return None
        if info.size < length:
            return info.size, b""
        try:
            data = obstore.get_range(self._store, name, start=info.size - length, end=info.size)
        except (obx.BaseError, OSError) as exc:
            raise self._map(exc, name, "read") from None
        return info.size, bytes(data)

    def get_stream(self, name: str, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
        """The stored bytes of `name`, streamed. Raises ObjectAbsent, or RepoError for anything else."""
        try:
            result = obstore.get(self._store, name)
            start, end = result.range
            stream = result.stream(min_chunk_size=chunk_size)
        except (obx.BaseError, OSError) as exc:
            raise self._map(exc, name, "read") from None
        received = 0
        while True:
            try:
                chunk = next(stream)
            except StopIteration:
                break
            except (obx.BaseError, OSError) as exc:
                raise self._map(exc, name, "read") from None
            received += len(chunk)
            yield bytes(chunk)
        if received != end - start:  # a body cut short without an error: never a complete read
            raise StoreUnavailable(
                f"reading {name} in {self.url.display()} ended after {received} of {end - start} bytes",
                hint="the connection or the store failed mid-read; try again",
            )

    def head(self, name: str) -> ObjectInfo | None:
        try:
            meta = obstore.head(self._store, name)
        except (obx.NotFoundError, FileNotFoundError) as exc:
            mapped = self._map(exc, name, "read")
            if isinstance(mapped, ObjectAbsent):
                return None
            raise mapped from None
        except (obx.BaseError, OSError) as exc:
            raise self._map(exc, name, "read") from None
        return ObjectInfo(name=name, size=int(meta["size"]))

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        try:
            for batch in obstore.list(self._store, prefix=prefix or None, chunk_size=1000):
                for meta in batch:
                    yield ObjectInfo(name=str(meta["path"]), size=int(meta["size"]))
        except (obx.BaseError, OSError) as exc:
            raise self._map(exc, prefix + "*", "list") from None

    def delete(self, name: str) -> None:
        try:
            obstore.delete(self._store, name)
        except (obx.BaseError, OSError) as exc:
            mapped = self._map(exc, name, "delete")
            if not isinstance(mapped, ObjectAbsent):
                raise mapped from None

    def _sync_local(self, name: str) -> None:
        """Local stores: fsync the file and its directory, as the local WAL archive always did, so an
        archived segment survives a power loss once archive-wal has exited 0."""
        if self.url.kind != "local" or self.url.path is None:
            return
        target = self.url.path / name
        for path, flags in ((target, os.O_RDONLY), (target.parent, os.O_RDONLY | os.O_DIRECTORY)):
            fd = os.open(path, flags)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
