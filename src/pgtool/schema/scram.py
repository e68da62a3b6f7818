"""SCRAM-SHA-256 password verifiers: made by libpq, checked here.

`ALTER ROLE ... PASSWORD` cannot take a bind parameter, so the password would be spelled out in the
statement - and in the server log whenever statements are logged. Sending the verifier instead keeps the
plaintext on this machine: PostgreSQL stores a string that already looks like a SCRAM verifier as is.
`verifier()` asks libpq for it (PQencryptPasswordConn, with its SASLprep, salt and the server's iteration
count). `matches()` is what no library offers: it re-derives a stored verifier from a password with the
stored salt and iteration count (RFC 5802 / RFC 7677), which is how a second bootstrap run knows the
password is already in place without changing it. Passwords are normalised with NFKC there, the part of
SASLprep that matters in practice (ASCII passwords are unaffected either way).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import unicodedata
from typing import Any

import psycopg

_VERIFIER = re.compile(r"^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$")


def verifier(conn: psycopg.Connection[Any], role: str, password: str) -> str:
    """The `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` string for `password`, from libpq."""
    return conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()


def _normalise(password: str) -> bytes:
    if password.isascii():
        return password.encode()
    return unicodedata.normalize("NFKC", password).encode()


def _keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    salted = hashlib.pbkdf2_hmac("sha256", _normalise(password), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return stored_key, server_key


def matches(stored: str | None, password: str) -> bool:
    """True when `stored` (pg_authid.rolpassword) is a SCRAM verifier of `password`."""
    match = _VERIFIER.match(stored or "")
    if not match:
        return False
    iterations, salt, stored_key, server_key = match.groups()
    want_stored, want_server = _keys(password, base64.b64decode(salt), int(iterations))
    return hmac.compare_digest(want_stored, base64.b64decode(stored_key)) and hmac.compare_digest(
        want_server, base64.b64decode(server_key)
    )
