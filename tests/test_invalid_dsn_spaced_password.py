"""A URI DSN whose password holds a raw space is malformed (libpq wants %20): the UsageError that says
so must not show the password, though redaction of well-formed DSNs stops at whitespace."""

from __future__ import annotations

import pytest

from pgharness import run_pgtool


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://alice:hunter two SECRETX@db.example/app",
        "postgresql://db.example/app?password=hunter two SECRETX",
    ],
)
def test_the_usage_error_does_not_echo_a_spaced_password(dsn):
    proc = run_pgtool("status", "--dsn", dsn)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "invalid DSN" in proc.stderr
    out = proc.stdout + proc.stderr
    assert "SECRETX" not in out and "hunter" not in out and "two" not in out


def test_a_dsn_the_cli_does_not_check_first_is_redacted_too(cluster):
    """--pooler-dsn reaches pgtool.pg.conn.connect without the --dsn check: same rule there."""
    pooler = "postgresql://alice:hunter two SECRETX@127.0.0.1:1/pgbouncer"
    proc = run_pgtool("status", "--dsn", cluster.dsn(), "--pooler-dsn", pooler)
    out = proc.stdout + proc.stderr
    assert "invalid DSN" in out, out
    assert "SECRETX" not in out and "hunter" not in out
