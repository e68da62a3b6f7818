"""The repository record (`pgtool.repo.json`) and the repository key.

The record is the one object readable without the key. It says the format version and, for an
encrypted repository, how the key is derived from the key file (KDF, salt, cost) plus a key check: a
keyed BLAKE2b of those parameters under the derived key. The check holds no data; it turns a missing
or wrong key into one clear error before any object is touched, and it binds the parameters, so a
record edited to a cheaper KDF fails the check instead of weakening new objects.

KDF: Argon2id (libsodium's interactive cost, ~0.2 s here) for a passphrase. A key file of 32 or more
bytes that is not text (`head -c 32 /dev/urandom`) already holds a full-strength key and goes through
keyed BLAKE2b instead, which costs nothing: `archive-wal` runs once per WAL segment.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time

from pgtool.repo.errors import IntegrityError, RepoKeyError, RepoUsageError

# Not typing.TYPE_CHECKING: archive-wal reads the record once per segment, and typing, datetime and
# pathlib are imported only where used (typing never). Mypy reads any constant of this name as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

RECORD_NAME = "pgtool.repo.json"
FORMAT = "pgtool-repository"
FORMAT_VERSION = 1
CIPHER = "xchacha20poly1305-secretstream"
_PERSON = b"pgtool-repo-key1"
_CHECK_DOMAIN = b"pgtool repository key check v1\x00"

# A JSON object as `json.loads` gives it: the record and its encryption parameters come from the store,
# untrusted, so their values are Any until each is checked (or fails) where it is read.
if TYPE_CHECKING:
    JSONObject = dict[str, Any]


def read_key_file(path: str | os.PathLike[str]) -> bytes:
    """The secret in a key file: its content, less one trailing newline (editors and `echo` add one)."""
    try:
        with open(path, "rb") as f:
            secret = f.read()
    except OSError as exc:
        raise RepoUsageError(f"cannot read the repository key file {path}: {exc.strerror}") from None
    for ending in (b"\r\n", b"\n"):
        if secret.endswith(ending):
            secret = secret[: -len(ending)]
            break
    if len(secret) < 8:
        raise RepoUsageError(
            f"the repository key file {path} holds {len(secret)} bytes; at least 8 are needed",
            hint="e.g. head -c 32 /dev/urandom > KEYFILE",
        )
    return secret


def _is_text(secret: bytes) -> bool:
    try:
        text = secret.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return text.isprintable()


def _canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def new_encryption(secret: bytes) -> JSONObject:
    """Encryption parameters for a new repository keyed by `secret` (key check included)."""
    params: JSONObject = {"cipher": CIPHER, "salt": os.urandom(16).hex()}
    if len(secret) >= 32 and not _is_text(secret):
        params["kdf"] = "blake2b"
    else:
        from nacl import pwhash  # only for passphrases: ~15 ms of import archive-wal does not need

        params.update(
            kdf="argon2id",
            opslimit=pwhash.argon2id.OPSLIMIT_INTERACTIVE,
            memlimit=pwhash.argon2id.MEMLIMIT_INTERACTIVE,
        )
    params["key_check"] = _key_check(params, derive_key(params, secret))
    return params


def derive_key(params: JSONObject, secret: bytes) -> bytes:
    salt = bytes.fromhex(params["salt"])
    if params["kdf"] == "blake2b":
        return hashlib.blake2b(secret, digest_size=32, salt=salt, person=_PERSON).digest()
    if params["kdf"] == "argon2id":
        from nacl import pwhash

        argon = pwhash.argon2id
        # Floors so a planted record cannot lower the cost below libsodium's interactive level, and
        # ceilings (its "sensitive" level: 1 GiB) so it cannot make every archive-wal exhaust memory
        # before the key check could refuse it.
        ops = max(int(params["opslimit"]), argon.OPSLIMIT_INTERACTIVE)
        mem = max(int(params["memlimit"]), argon.MEMLIMIT_INTERACTIVE)
        if ops > argon.OPSLIMIT_SENSITIVE or mem > argon.MEMLIMIT_SENSITIVE:
            raise IntegrityError(
                f"{RECORD_NAME}: key derivation cost beyond libsodium's sensitive level "
                f"(opslimit {ops}, memlimit {mem}): not a record pgtool wrote"
            )
        return argon.kdf(32, secret, salt, opslimit=ops, memlimit=mem)
    raise IntegrityError(f"{RECORD_NAME}: unknown key derivation {params['kdf']!r}")


def _key_check(params: JSONObject, key: bytes) -> str:
    bound = {k: v for k, v in params.items() if k != "key_check"}
    return hashlib.blake2b(_CHECK_DOMAIN + _canonical(bound), key=key, digest_size=32).hexdigest()


def unlock(params: JSONObject, secret: bytes, where: str) -> bytes:
    """The data key of an encrypted repository, or RepoKeyError when `secret` is not its key."""
    try:
        key = derive_key(params, secret)
        # compare_digest refuses non-ASCII str: compare bytes
        matches = hmac.compare_digest(
            _key_check(params, key).encode(), str(params.get("key_check", "")).encode()
        )
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
        # The record's checksum is unkeyed: a planted record can pass it with any parameters.
        raise IntegrityError(
            f"{RECORD_NAME} of {where} holds malformed encryption parameters",
            hint="the repository record was altered or damaged",
        ) from None
    if not matches:
        raise RepoKeyError(
            f"wrong key for the encrypted repository {where}",
            hint="--repo-key-file / PGTOOL_REPO_KEY_FILE must hold the key the repository was created with",
        )
    return key


def new_record(encryption: JSONObject | None) -> bytes:
    body = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "encryption": encryption,
    }
    body["checksum"] = hashlib.sha256(_canonical(body)).hexdigest()
    return json.dumps(body, indent=2, sort_keys=True).encode() + b"\n"


def parse_record(data: bytes, where: str) -> JSONObject:
    """The repository record, checked for damage and for a format this pgtool reads."""
    try:
        body = json.loads(data)
    except ValueError:
        raise IntegrityError(f"{where} is not a pgtool repository record") from None
    if not isinstance(body, dict) or "checksum" not in body:
        raise IntegrityError(f"{where} is not a pgtool repository record")
    checksum = body.pop("checksum")
    if not hmac.compare_digest(hashlib.sha256(_canonical(body)).hexdigest(), str(checksum)):
        raise IntegrityError(
            f"{where} failed its checksum", hint="the repository record was altered or damaged"
        )
    if body.get("format") != FORMAT:
        raise IntegrityError(f"{where} is not a pgtool repository record")
    if body.get("version") != FORMAT_VERSION:
        raise IntegrityError(
            f"{where} has repository format {body.get('version')}; this pgtool reads {FORMAT_VERSION}"
        )
    return body
