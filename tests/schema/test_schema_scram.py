"""pgtool checks SCRAM verifiers made by libpq (PQencryptPasswordConn), which also makes its own."""

from __future__ import annotations

from pgtool.schema import scram


def test_verifiers_match_libpq(database):
    with database.connect() as conn:
        for password in ("s3cret", "with space and 'quote'", "ünïcödé-pass"):
            from_libpq = conn.pgconn.encrypt_password(
                password.encode(), b"someone", b"scram-sha-256"
            ).decode()
            assert scram.matches(from_libpq, password)
            assert not scram.matches(from_libpq, password + "x")
            ours = scram.verifier(conn, "someone", password)
            assert ours.startswith("SCRAM-SHA-256$") and ours != from_libpq  # a fresh salt each time
            assert scram.matches(ours, password)
    assert not scram.matches("md5abcdef", "s3cret")
    assert not scram.matches(None, "s3cret")
