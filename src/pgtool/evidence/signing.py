"""Ed25519 keys for evidence records, through `cryptography` only (no home-made crypto).

A private key file is PEM (PKCS#8, `openssl genpkey -algorithm ed25519`) or the raw 32-byte seed;
a public key file is PEM (SubjectPublicKeyInfo) or the raw 32 bytes. A key's fingerprint is the
hex SHA-256 of its raw public bytes.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pgtool.errors import UsageError

ALGORITHM = "ed25519"
KEY_ENV = "PGTOOL_EVIDENCE_KEY_FILE"
_RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the evidence {what} {path}: {exc.strerror or exc}") from None


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in `path` (PEM or raw 32 bytes); UsageError otherwise."""
    data = _read(path, "signing key")
    hint = "generate one with: openssl genpkey -algorithm ed25519 -out evidence.pem"
    if len(data) == 32 and not data.startswith(b"-----"):
        return Ed25519PrivateKey.from_private_bytes(data)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        # The library's message could quote key material: say only what the file is not.
        raise UsageError(
            f"evidence signing key {path} is neither a PEM private key nor 32 raw bytes", hint=hint
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"evidence signing key {path} is not an Ed25519 key", hint=hint)
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The Ed25519 public key in `path` (PEM or raw 32 bytes); UsageError otherwise."""
    data = _read(path, "public key")
    if len(data) == 32 and not data.startswith(b"-----"):
        return Ed25519PublicKey.from_public_bytes(data)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise UsageError(f"{path} is neither a PEM public key nor 32 raw bytes") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"{path} is not an Ed25519 public key")
    return key


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(*_RAW)


def fingerprint(key: Ed25519PublicKey) -> str:
    return hashlib.sha256(raw_public(key)).hexdigest()


def sign(key: Ed25519PrivateKey, message: bytes) -> dict[str, str]:
    """The `signature` member of a record: algorithm, public key (base64) and its fingerprint, value."""
    public = key.public_key()
    return {
        "algorithm": ALGORITHM,
        "public_key": base64.b64encode(raw_public(public)).decode(),
        "public_key_sha256": fingerprint(public),
        "value": base64.b64encode(key.sign(message)).decode(),
    }


def check(signature: object, message: bytes, pinned: Ed25519PublicKey | None) -> str | None:
    """None if `signature` (a record's member) signs `message`; else what is wrong.

    With `pinned`, the signature must be that key's; without, the key the record names is used (which
    proves integrity against that key only: pin the key to prove who signed).
    """
    if not isinstance(signature, dict) or signature.get("algorithm") != ALGORITHM:
        return "signature is malformed or not ed25519"
    try:
        named = Ed25519PublicKey.from_public_bytes(
            base64.b64decode(str(signature["public_key"]), validate=True)
        )
        value = base64.b64decode(str(signature["value"]), validate=True)
    except (KeyError, ValueError):
        return "signature is malformed"
    if signature.get("public_key_sha256") != fingerprint(named):
        return "signature's key fingerprint does not match its key"
    key = named
    if pinned is not None:
        if raw_public(pinned) != raw_public(named):
            return f"signed by key {fingerprint(named)[:16]}..., not the given public key"
        key = pinned
    try:
        key.verify(value, message)
    except InvalidSignature:
        return "signature does not verify"
    return None
