"""Real storage servers for the repository tests: moto's S3 server and Azurite (Azure Blob).

Both are installed by scripts/setup-storage.sh (moto in .tools/moto-venv, Azurite in .tools/node_modules);
a missing one fails the test with that hint rather than skipping it. Buckets and containers are created
with real signed requests (S3: moto accepts path-style bucket creation; Azure: a SharedKey request).
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
import hmac
import http.client
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any, Protocol

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / ".tools"
MOTO = TOOLS / "moto-venv" / "bin" / "moto_server"
AZURITE = TOOLS / "node_modules" / ".bin" / "azurite-blob"
HINT = "run: bash scripts/setup-storage.sh (installs moto's S3 server and Azurite into .tools/)"
# Azurite's published development account (documented by Microsoft; not a secret).
AZ_ACCOUNT = "devstoreaccount1"
# What Azurite logs once its stores are closed and flushed (azurite/dist/src/blob/main.js).
AZURITE_CLOSED = "Azurite Blob service successfully closed"
AZ_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"storage server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"storage server did not listen on {port}: {log.read_text()[-2000:]}")


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the test process dies, so an interrupted run
    (Ctrl-C twice, a CI timeout) leaves no server behind. Linux prctl(PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


class Namespace(Protocol):
    """A network namespace to run a server in (tests/repo/repo_links.py: NetNamespace)."""

    def wrap(self, argv: list[str]) -> list[str]: ...
    def call(self, fn: Any) -> Any: ...


@dataclass
class Server:
    """One running storage server; `stop()` kills it (a store lost mid-operation), `start()` again."""

    kind: str
    argv: list[str]
    port: int
    log: Path
    proc: subprocess.Popen | None = None
    buckets: list[str] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    netns: Namespace | None = None  # run inside this network namespace (a degraded link)

    def _here(self, fn: Any) -> Any:
        """Run `fn` (which opens sockets to the server) where the server's loopback is."""
        return self.netns.call(fn) if self.netns is not None else fn()

    def start(self) -> None:
        argv = self.netns.wrap(self.argv) if self.netns is not None else self.argv
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.log.parent,
                env={**os.environ, **self.extra_env},
                preexec_fn=_die_with_parent,
            )
        proc = self.proc
        self._here(lambda: _wait_port(self.port, proc, self.log))

    def stop(self, sig: int = signal.SIGKILL, *, wait: bool = True) -> None:
        """Stop the server; SIGTERM lets Azurite save its metadata (it keeps data across restarts).
        `wait=False` only sends the signal: a graceful stop waits for the client's open connections."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            if wait:
                self.proc.wait(timeout=120)

    def stop_gracefully(self, timeout: float = 120) -> None:
        """Azurite's SIGTERM: it closes its stores (metadata saved) and logs AZURITE_CLOSED, but Node then
        stays alive while any client still holds a keep-alive socket, which under load can be minutes.
        Once that line is logged nothing is left to lose, so the leftover process is killed."""
        assert self.kind == "azure", "only Azurite keeps its data across a restart"
        if not self.proc or self.proc.poll() is not None:
            return
        closed_before = self.log.read_text(errors="replace").count(AZURITE_CLOSED)
        os.killpg(self.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if self.log.read_text(errors="replace").count(AZURITE_CLOSED) > closed_before:
                self.stop(signal.SIGKILL)
                return
            if time.monotonic() > deadline:
                pytest.fail(f"Azurite did not close within {timeout:.0f} s of SIGTERM: {self.log}")
            time.sleep(0.1)

    @property
    def endpoint(self) -> str:
        if self.kind == "azure":
            return f"http://127.0.0.1:{self.port}/{AZ_ACCOUNT}"
        return f"http://127.0.0.1:{self.port}"

    def env(self, **overrides: str) -> dict[str, str]:
        """The standard variables a deployment would set for this store (plus `overrides`)."""
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AZURE_"))}
        if self.kind == "s3":
            base.update(
                AWS_ACCESS_KEY_ID="testing",
                AWS_SECRET_ACCESS_KEY="testing-secret-key",
                AWS_REGION="us-east-1",
                AWS_ENDPOINT_URL=self.endpoint,
                AWS_ALLOW_HTTP="true",
            )
        else:
            base.update(
                AZURE_STORAGE_ACCOUNT_NAME=AZ_ACCOUNT,
                AZURE_STORAGE_ACCOUNT_KEY=AZ_KEY,
                AZURE_STORAGE_ENDPOINT=self.endpoint,
            )
        base.update(overrides)
        return base

    def make_bucket(self, name: str) -> None:
        self._here(lambda: self._make_bucket(name))

    def _make_bucket(self, name: str) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        if self.kind == "s3":
            conn.request("PUT", f"/{name}", body=b"", headers={"Content-Length": "0"})
        else:
            path = f"/{AZ_ACCOUNT}/{name}?restype=container"
            conn.request(
                "PUT", path, body=b"", headers=_azure_shared_key("PUT", name, {"restype": "container"})
            )
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status in (200, 201), (resp.status, body[:500])
        self.buckets.append(name)

    def upload_in_progress(self, bucket: str, key: str) -> bool:
        """Whether the store holds parts of an uncommitted upload of `key` (S3 multipart uploads,
        Azure uncommitted blocks): proof that a test interrupted a real partial upload."""
        return bool(self._here(lambda: self._upload_in_progress(bucket, key)))

    def _upload_in_progress(self, bucket: str, key: str) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        if self.kind == "s3":
            conn.request("GET", f"/{bucket}?uploads")
        else:
            query = {"restype": "container", "comp": "list", "include": "uncommittedblobs"}
            path = f"/{AZ_ACCOUNT}/{bucket}?" + "&".join(f"{k}={v}" for k, v in query.items())
            conn.request("GET", path, headers=_azure_shared_key("GET", bucket, query))
        resp = conn.getresponse()
        body = resp.read().decode()
        assert resp.status == 200, (resp.status, body[:500])
        return f"<Key>{key}</Key>" in body if self.kind == "s3" else f"<Name>{key}</Name>" in body


def _azure_shared_key(verb: str, container: str, query: dict[str, str]) -> dict[str, str]:
    """Headers of a SharedKey-signed Blob request with no body (Azure's documented signing scheme)."""
    headers = {"x-ms-date": formatdate(usegmt=True), "x-ms-version": "2021-08-06", "Content-Length": "0"}
    canon_headers = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()) if k.startswith("x-ms-"))
    canon_resource = f"/{AZ_ACCOUNT}/{AZ_ACCOUNT}/{container}" + "".join(
        f"\n{k}:{v}" for k, v in sorted(query.items())
    )
    to_sign = f"{verb}\n\n\n\n\n\n\n\n\n\n\n\n{canon_headers}{canon_resource}"
    sig = base64.b64encode(
        hmac.new(base64.b64decode(AZ_KEY), to_sign.encode(), hashlib.sha256).digest()
    ).decode()
    return {**headers, "Authorization": f"SharedKey {AZ_ACCOUNT}:{sig}"}


def start_server(
    kind: str, workdir: Path, extra_env: dict[str, str] | None = None, netns: Namespace | None = None
) -> Server:
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    if kind == "s3":
        if not MOTO.exists():
            pytest.fail(f"moto's S3 server is not installed at {MOTO}: {HINT}")
        argv = [str(MOTO), "-H", "127.0.0.1", "-p", str(port)]
    else:
        if not AZURITE.exists() or shutil.which("node") is None:
            pytest.fail(f"Azurite (or node) is not installed at {AZURITE}: {HINT}")
        argv = [
            str(AZURITE),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--location",
            str(workdir / "azurite"),
            "--skipApiVersionCheck",
            "--silent",
        ]
    server = Server(
        kind=kind, argv=argv, port=port, log=workdir / f"{kind}.log", extra_env=extra_env or {}, netns=netns
    )
    server.start()
    return server


def account_sas(permissions: str) -> str:
    """An Azure account SAS token for the blob service (Azure's documented account-SAS signing)."""
    fields = {"sv": "2021-08-06", "ss": "b", "srt": "sco", "sp": permissions, "se": "2030-01-01T00:00:00Z"}
    fields["spr"] = "https,http"
    parts = [
        AZ_ACCOUNT,
        fields["sp"],
        fields["ss"],
        fields["srt"],
        "",
        fields["se"],
        "",
        fields["spr"],
        fields["sv"],
    ]
    to_sign = "\n".join([*parts, "", ""])
    sig = base64.b64encode(
        hmac.new(base64.b64decode(AZ_KEY), to_sign.encode(), hashlib.sha256).digest()
    ).decode()
    return urllib.parse.urlencode({**fields, "sig": sig})
