"""A slow, lossy or dead link between pgtool and its store (issue 17, "Tests: real servers, real faults").

The storage server and the pgtool client run together in a private network namespace whose loopback
the kernel degrades (tests/repo/repo_links.py): random packet loss (nftables) and a rate limit (tc tbf),
or a black hole. Over a lossy link every operation still succeeds (TCP and obstore's retries); over a
dead one each fails with StoreUnavailable within the configured timeouts, never ObjectAbsent, and
nothing half-written becomes visible once the link is back.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import repo_links

import repo_servers
from pgtool.repo import ObjectDiffers, open_repository, wal_name

# The client runs inside the namespace: a separate process (obstore's sockets live on its own threads,
# which a per-thread setns in the test process would not reach).
_CLIENT = textwrap.dedent(
    """
    import hashlib, json, os, sys, time
    from pathlib import Path
    from pgtool.repo import ObjectAbsent, RepoError, open_repository, wal_name

    url, phase, workdir = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    opts = json.loads(sys.argv[4])
    out = {}
    seg = wal_name("000000010000000000000007")
    base = "base/20261207T010000Z/base.tar"

    def blocks(n, seed):
        return [hashlib.sha256(seed + bytes([i])).digest() * 32768 for i in range(n)]

    if phase == "work":
        repo = open_repository(url, create=True, **opts)
        # a segment: 16 MiB, 4 of them incompressible, so the compressed upload is still sizeable
        wal = os.urandom(4 << 20) + bytes(12 << 20)
        t = time.monotonic()
        out["created"] = repo.put_if_absent(seg, wal)
        out["again"] = repo.put_if_absent(seg, wal)
        parts = [os.urandom(1 << 20) for _ in range(12)]
        out["streamed"] = repo.put_stream(base, iter(parts), compress=False)
        out["read"] = repo.read_to_file(base, workdir / "base.tar")
        out["same_base"] = (workdir / "base.tar").read_bytes() == b"".join(parts)
        out["same_wal"] = repo.read_bytes(seg) == wal
        out["seconds"] = time.monotonic() - t
    elif phase == "cut":
        repo = open_repository(url, create=True, **opts)
        cut_at = {}

        def producer():
            for i in range(40):
                if i == 12:
                    (workdir / "parts-sent").touch()
                    while not (workdir / "link-dead").exists():
                        time.sleep(0.05)
                    cut_at["t"] = time.monotonic()
                yield os.urandom(1 << 20)

        for op, call in (
            ("put_stream", lambda: repo.put_stream(base, producer(), compress=False)),
            ("read_absent", lambda: repo.read_bytes(seg)),
            ("put_if_absent", lambda: repo.put_if_absent(seg, b"x" * 1000)),
            ("read_to_file", lambda: repo.read_to_file(seg, workdir / "seg")),
        ):
            t = cut_at.get("t", time.monotonic())
            try:
                call()
                out[op] = {"error": None}
            except RepoError as exc:
                out[op] = {"error": type(exc).__name__, "absent": isinstance(exc, ObjectAbsent),
                           "line": exc.one_line()}
            out[op]["seconds"] = time.monotonic() - t
        out["spool"] = sorted(p.name for p in workdir.iterdir())
    else:
        repo = open_repository(url, **opts)
        out["names"] = [info.name for info in repo.list("")]
        out["base_exists"] = repo.exists(base)
    print(json.dumps(out))
    """
)


@pytest.fixture(params=["s3", "azure"])
def linked(request: pytest.FixtureRequest, tmp_path: Path):
    """(namespace, server, url): a store reachable only inside a namespace whose link the test degrades."""
    netns = repo_links.NetNamespace()
    request.addfinalizer(netns.close)
    server = repo_servers.start_server(request.param, tmp_path / "server", netns=netns)
    request.addfinalizer(server.stop)
    server.make_bucket("pgtool-linked")
    return netns, server, f"{request.param}://pgtool-linked/p"


def _client(netns, server, url: str, phase: str, workdir: Path, timeout: float, **opts) -> dict:
    workdir.mkdir(exist_ok=True)
    argv = [sys.executable, "-c", _CLIENT, url, phase, str(workdir), json.dumps(opts)]
    proc = subprocess.run(netns.wrap(argv), env=server.env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_slow_lossy_link_everything_still_succeeds(linked, tmp_path):
    """10% of packets lost at random, 40 Mbit/s: put_if_absent, put_stream and read_to_file complete
    and the content is intact (retries happen where they are safe)."""
    netns, server, url = linked
    netns.degrade(loss_percent=10, rate="40mbit")
    out = _client(netns, server, url, "work", tmp_path / "work", timeout=300)
    assert out["created"] is True and out["again"] is False
    assert out["streamed"] == out["read"] == 12 << 20
    assert out["same_base"] and out["same_wal"], out
    assert netns.dropped() > 20  # the link really lost packets on the way
    netns.heal()
    check = _client(netns, server, url, "check", tmp_path / "check", timeout=60)
    assert check["names"] == [
        "base/20261207T010000Z/base.tar",
        "pgtool.repo.json",
        "wal/00000001/000000010000000000000007",
    ]


def test_dead_link_fails_clearly_within_the_timeouts_and_shows_nothing(linked, tmp_path):
    """The link dies (every packet dropped) in the middle of a multipart upload: the upload, a read
    and a conditional create each fail as StoreUnavailable naming the object, within the request
    timeout and retry budget; a read is never "absent". Once the link is back nothing is visible."""
    netns, server, url = linked
    work = tmp_path / "cut"
    work.mkdir()
    client = subprocess.Popen(
        netns.wrap(
            [
                sys.executable,
                "-c",
                _CLIENT,
                url,
                "cut",
                str(work),
                json.dumps({"max_retries": 1, "retry_timeout": 3, "timeout": 4}),
            ]
        ),
        env=server.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (work / "parts-sent").exists():
            assert client.poll() is None, client.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the client never started its upload"
            time.sleep(0.05)
        netns.degrade(loss_percent=100)
        (work / "link-dead").touch()
        stdout, stderr = client.communicate(timeout=240)
    finally:
        client.kill()
    assert client.returncode == 0, stderr[-3000:]
    out = json.loads(stdout)
    assert netns.dropped() > 0
    names = {
        "put_stream": "base/20261207T010000Z/base.tar",
        "read_absent": "000000010000000000000007",
        "put_if_absent": "000000010000000000000007",
        "read_to_file": "000000010000000000000007",
    }
    for op, name in names.items():
        result = out[op]
        assert result["error"] == "StoreUnavailable" and not result["absent"], (op, result)
        assert name in result["line"] and url in result["line"], (op, result)
        # request timeout 4 s, one retry, 3 s retry budget: well under a minute, never hanging
        assert result["seconds"] < 30, (op, result)
    assert out["spool"] == ["link-dead", "parts-sent"]  # read_to_file left no temporary file
    netns.heal()
    check = _client(netns, server, url, "check", tmp_path / "check", timeout=60)
    assert check["names"] == ["pgtool.repo.json"] and not check["base_exists"]


# -- a proxy between client and server: a long link, and answers lost on the way back ---------------


@pytest.fixture(params=["s3", "azure"])
def proxied(request: pytest.FixtureRequest):
    """(proxy, url, env): a fresh bucket on the session's server, reached only through a FaultyProxy."""
    server = request.getfixturevalue(f"{request.param}_server")
    bucket = f"pgtool-proxied-{next(_buckets)}"
    server.make_bucket(bucket)
    proxy = repo_links.FaultyProxy(server.port)
    request.addfinalizer(proxy.close)
    if request.param == "s3":
        env = server.env(AWS_ENDPOINT_URL=f"http://127.0.0.1:{proxy.port}")
    else:
        env = server.env(AZURE_STORAGE_ENDPOINT=f"http://127.0.0.1:{proxy.port}/{repo_servers.AZ_ACCOUNT}")
    return proxy, f"{request.param}://{bucket}/p", env


_buckets = itertools.count(1)
SEGMENT = wal_name("000000010000000000000009")


def test_long_link_operations_succeed(proxied, tmp_path):
    """200 ms each way on every exchange (what netem's delay would do): slower, but everything works."""
    proxy, url, env = proxied
    proxy.delay = 0.2
    repo = open_repository(url, environ=env, create=True)
    started = time.monotonic()
    assert repo.put_if_absent(SEGMENT, b"wal" * 100_000) is True
    assert repo.put_stream("base/20261207T020000Z/base.tar", iter([os.urandom(1 << 20)] * 10)) == 10 << 20
    assert repo.read_to_file("base/20261207T020000Z/base.tar", tmp_path / "base.tar") == 10 << 20
    assert repo.read_bytes(SEGMENT) == b"wal" * 100_000
    assert time.monotonic() - started > 2.0  # the delay was really in the path


@pytest.mark.parametrize("keyed", [False, True])
def test_conditional_create_whose_answer_was_lost(proxied, keyed, random_key_file):
    """The store created the segment, the connection died before its answer arrived: pgtool retries
    the conditional create, finds its own object and reports success (False: it was already there)
    instead of failing archive-wal; the stored content is the one sent."""
    proxy, url, env = proxied
    repo = open_repository(url, environ=env, create=True, key_file=random_key_file if keyed else None)
    data = os.urandom(1 << 20)
    proxy.lose_answer(b"000000010000000000000009")
    assert repo.put_if_absent(SEGMENT, data) is False
    assert proxy.answers_lost == 1
    assert repo.read_bytes(SEGMENT) == data
    with pytest.raises(ObjectDiffers):  # and a different segment is still refused after such a retry
        proxy.lose_answer(b"000000010000000000000009")
        repo.put_if_absent(SEGMENT, os.urandom(1 << 20))


@pytest.mark.parametrize("keyed", [False, True])
def test_multipart_completion_whose_answer_was_lost(proxied, keyed, random_key_file):
    """The store committed a multipart upload and the answer was lost: the retried completion fails
    (S3: NoSuchUpload, Azure: the blocks are already committed), yet the object is whole. put_stream
    proves it is this upload (size and last bytes) and succeeds, instead of a backup reported failed
    whose name then refuses the retry ("already exists")."""
    proxy, url, env = proxied
    repo = open_repository(url, environ=env, create=True, key_file=random_key_file if keyed else None)
    name = "base/20261207T030000Z/base.tar"
    parts = [os.urandom(1 << 20) for _ in range(20)]
    bucket = url.split("://")[1].split("/")[0]
    # the completing request: S3's CompleteMultipartUpload, Azure's Put Block List
    proxy.lose_answer(f"POST /{bucket}/p/{name}?uploadId=".encode() if "s3" in url else b"comp=blocklist")
    assert repo.put_stream(name, iter(parts), compress=False) == 20 << 20
    assert proxy.answers_lost == 1
    assert repo.read_bytes(name) == b"".join(parts)
