"""Faults a repository must turn into one clear error, with nothing half-visible: wrong credentials,
a missing bucket, a missing or wrong key, a damaged record, and the store dying mid-upload. And the
distinction restore-wal needs: "absent" (exit 1) only when the name truly holds nothing."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import urllib.parse

import obstore
import pytest

import repo_servers
from pgtool.repo import (
    IntegrityError,
    ObjectAbsent,
    RepoError,
    RepoKeyError,
    RepoUsageError,
    StoreUnavailable,
    open_repository,
    wal_name,
)

SEGMENT = wal_name("00000002000000000000000A")


@pytest.mark.parametrize("kind", ["s3", "azure"])
def test_wrong_credentials_is_a_clear_error_without_the_secret(kind, request, tmp_path):
    if kind == "s3":
        # moto checks signatures only when IAM enforcement is on; the bucket creation is the one
        # unauthenticated action allowed, after which the test's keys are unknown to it.
        server = repo_servers.start_server("s3", tmp_path / "s3", {"INITIAL_NO_AUTH_ACTION_COUNT": "1"})
        request.addfinalizer(server.stop)
        server.make_bucket("locked")
        env, secret = server.env(AWS_SECRET_ACCESS_KEY="wrong-secret-1234"), "wrong-secret-1234"
        url = "s3://locked/p"
    else:
        server = request.getfixturevalue("azure_server")
        server.make_bucket("locked")
        secret = repo_servers.AZ_KEY.replace("Eby8", "AAAA")
        env, url = server.env(AZURE_STORAGE_ACCOUNT_KEY=secret), "azure://locked/p"
    with pytest.raises(StoreUnavailable) as info:
        open_repository(url, environ=env, create=True, max_retries=0)
    line = info.value.one_line()
    assert "pgtool.repo.json" in line and url in line and "denied" in line
    assert secret not in line and "\n" not in line


@pytest.mark.parametrize("kind", ["s3", "azure"])
def test_missing_bucket_is_an_error_not_absent(kind, request):
    server = request.getfixturevalue(f"{kind}_server")
    url = f"{kind}://no-such-bucket-{os.getpid()}/p"
    for create in (False, True):
        with pytest.raises(StoreUnavailable, match="does not exist") as info:
            open_repository(url, environ=server.env(), create=create, max_retries=0)
        assert not isinstance(info.value, ObjectAbsent)


def test_absent_only_when_the_repository_exists(backend):
    with pytest.raises(RepoError, match="no pgtool repository") as info:
        backend.open(create=False)
    assert not isinstance(info.value, ObjectAbsent)
    repo = backend.open()
    with pytest.raises(ObjectAbsent, match="00000002000000000000000A"):
        repo.read_bytes(SEGMENT)


def test_missing_wrong_and_unexpected_keys(backend, passphrase_file, random_key_file, tmp_path):
    backend.open(key_file=passphrase_file).put_if_absent(SEGMENT, b"wal bytes" * 1000)
    with pytest.raises(RepoKeyError, match="encrypted and no key was given"):
        backend.open(create=False)
    with pytest.raises(RepoKeyError, match="wrong key"):
        backend.open(key_file=random_key_file, create=False)
    # The environment variable names the key file as --repo-key-file does.
    repo = open_repository(backend.url, environ={**backend.env, "PGTOOL_REPO_KEY_FILE": str(passphrase_file)})
    assert repo.read_bytes(SEGMENT) == b"wal bytes" * 1000
    empty = tmp_path / "empty.key"
    empty.write_bytes(b"\n")
    with pytest.raises(RepoUsageError, match="at least 8"):
        backend.open(key_file=empty)
    with pytest.raises(RepoUsageError, match="cannot read"):
        backend.open(key_file=tmp_path / "missing.key")


def test_key_for_a_plain_repository_is_refused(backend, random_key_file):
    backend.open()
    with pytest.raises(RepoKeyError, match="not encrypted but a key file was given"):
        backend.open(key_file=random_key_file)


def test_planted_cleartext_object_in_an_encrypted_repository(backend, random_key_file):
    plain = backend.open()
    plain.put_if_absent(SEGMENT, b"planted")
    planted = bytes(obstore.get(plain.store.backend, SEGMENT).bytes())
    obstore.delete(plain.store.backend, "pgtool.repo.json")
    obstore.delete(plain.store.backend, SEGMENT)
    repo = backend.open(key_file=random_key_file)
    obstore.put(repo.store.backend, SEGMENT, planted)
    with pytest.raises(IntegrityError, match="not encrypted but the repository is"):
        repo.read_bytes(SEGMENT)


def test_damaged_or_downgraded_record(backend, passphrase_file):
    repo = backend.open(key_file=passphrase_file)
    record = bytes(obstore.get(repo.store.backend, "pgtool.repo.json").bytes())
    obstore.put(repo.store.backend, "pgtool.repo.json", record.replace(b'"argon2id"', b'"blake2b"'))
    with pytest.raises(IntegrityError, match=r"pgtool\.repo\.json in .* failed its checksum"):
        backend.open(key_file=passphrase_file, create=False)
    # A rewrite with a valid checksum (a cheaper KDF for the passphrase) still fails the key check,
    # which binds the parameters: pgtool never encrypts under a key derived by a planted rule.
    body = json.loads(record)
    del body["checksum"]
    body["encryption"]["kdf"] = "blake2b"
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    body["checksum"] = hashlib.sha256(canonical).hexdigest()
    obstore.put(repo.store.backend, "pgtool.repo.json", json.dumps(body).encode())
    with pytest.raises(RepoKeyError, match="wrong key"):
        backend.open(key_file=passphrase_file, create=False)


def _signalling_stream(server: repo_servers.Server, sig: int):
    for i in range(40):
        if i == 12:
            os.killpg(server.proc.pid, sig)
        yield os.urandom(1024 * 1024)


def test_store_killed_mid_upload(isolated_backend):
    backend = isolated_backend
    repo = backend.open(max_retries=1, retry_timeout=3)
    name = "base/20261206T040000Z/base.tar"
    with pytest.raises(StoreUnavailable) as info:
        repo.put_stream(name, _signalling_stream(backend.server, signal.SIGKILL), compress=False)
    assert name in info.value.one_line() and backend.url in info.value.one_line()
    # While the store is down, a read is an error, never "absent": restore-wal must not end recovery.
    with pytest.raises(StoreUnavailable) as down:
        repo.read_bytes(SEGMENT)
    assert not isinstance(down.value, ObjectAbsent)
    with pytest.raises(StoreUnavailable):
        repo.put_if_absent(SEGMENT, b"x")
    with pytest.raises(StoreUnavailable):
        open_repository(backend.url, environ=backend.env, max_retries=0)


def test_store_hung_mid_upload_times_out_and_shows_nothing(isolated_backend):
    """A store that stops answering (SIGSTOP: a hung server or a black-holed link) fails the upload
    after the request timeout; once it answers again, nothing of the upload is visible."""
    backend = isolated_backend
    repo = backend.open(max_retries=1, retry_timeout=3, timeout=5)
    name = "base/20261206T060000Z/base.tar"
    try:
        with pytest.raises(StoreUnavailable) as info:
            repo.put_stream(name, _signalling_stream(backend.server, signal.SIGSTOP), compress=False)
        assert name in info.value.one_line()
        with pytest.raises(StoreUnavailable) as hung:
            repo.read_bytes(SEGMENT)
        assert not isinstance(hung.value, ObjectAbsent)
    finally:
        os.killpg(backend.server.proc.pid, signal.SIGCONT)
    assert not repo.exists(name)
    assert repo.list("base") == []
    assert repo.put_if_absent(SEGMENT, b"after the store came back") is True


def test_azure_sas_token_from_the_environment(azure_server):
    """A SAS token (AZURE_STORAGE_SAS_TOKEN) instead of the account key; a read-only token that is
    asked to write fails naming the object, without the token's signature in the message."""
    azure_server.make_bucket("sas-repo")
    env = azure_server.env(AZURE_STORAGE_SAS_TOKEN=repo_servers.account_sas("rwdlac"))
    del env["AZURE_STORAGE_ACCOUNT_KEY"]
    repo = open_repository("azure://sas-repo/p", environ=env, create=True)
    assert repo.put_if_absent(SEGMENT, b"via sas") is True
    assert repo.read_bytes(SEGMENT) == b"via sas"
    read_only = repo_servers.account_sas("rl")
    env["AZURE_STORAGE_SAS_TOKEN"] = read_only
    assert open_repository("azure://sas-repo/p", environ=env).read_bytes(SEGMENT) == b"via sas"
    with pytest.raises(StoreUnavailable, match="denied") as info:
        open_repository("azure://sas-repo/other", environ=env, create=True, max_retries=0)
    signature = urllib.parse.parse_qs(read_only)["sig"][0]
    assert "pgtool.repo.json" in info.value.one_line()
    assert (
        signature not in info.value.one_line() and urllib.parse.quote(signature) not in info.value.one_line()
    )


@pytest.mark.parametrize(
    "encryption",
    ["text", {"cipher": "x"}, {"kdf": "blake2b", "salt": "zz"}],
)
def test_a_record_with_malformed_encryption_parameters_is_an_integrity_error(
    local_backend, random_key_file, encryption
):
    """The record's checksum is no secret: a planted record with a valid one must still fail cleanly."""
    backend = local_backend
    repo = backend.open(key_file=random_key_file)
    body = {"format": "pgtool-repository", "version": 1, "created_at": "x", "encryption": encryption}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    body["checksum"] = hashlib.sha256(canonical).hexdigest()
    obstore.put(repo.store.backend, "pgtool.repo.json", json.dumps(body).encode())
    with pytest.raises(IntegrityError, match="malformed encryption parameters"):
        backend.open(key_file=random_key_file, create=False)
    # well-formed but for a non-ASCII key check: the wrong key, not a crash in compare_digest
    body = {**body, "encryption": {"kdf": "blake2b", "salt": "00", "key_check": "\u00e9"}}
    del body["checksum"]
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    body["checksum"] = hashlib.sha256(canonical).hexdigest()
    obstore.put(repo.store.backend, "pgtool.repo.json", json.dumps(body).encode())
    with pytest.raises(RepoKeyError, match="wrong key"):
        backend.open(key_file=random_key_file, create=False)


def test_a_planted_record_cannot_demand_an_unbounded_key_derivation(local_backend, passphrase_file):
    """Argon2id's cost comes from the record, which anyone with write access can replace: above
    libsodium's sensitive level (1 GiB) it is refused before any memory is spent, not derived."""
    from nacl import pwhash

    backend = local_backend
    repo = backend.open(key_file=passphrase_file)
    encryption = dict(repo.record["encryption"])
    encryption["memlimit"] = 64 * pwhash.argon2id.MEMLIMIT_SENSITIVE
    body = {"format": "pgtool-repository", "version": 1, "created_at": "x", "encryption": encryption}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    body["checksum"] = hashlib.sha256(canonical).hexdigest()
    obstore.put(repo.store.backend, "pgtool.repo.json", json.dumps(body).encode())
    with pytest.raises(IntegrityError, match="beyond libsodium's sensitive level"):
        backend.open(key_file=passphrase_file, create=False)


def test_secretstream_constants_are_libsodiums():
    """objformat spells them out so that nacl.bindings loads only for encrypted repositories."""
    from nacl import bindings as sodium

    from pgtool.repo import objformat

    assert sodium.crypto_secretstream_xchacha20poly1305_ABYTES == objformat._ABYTES
    assert sodium.crypto_secretstream_xchacha20poly1305_HEADERBYTES == objformat._SS_HEADER
    assert sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL == objformat._TAG_FINAL
