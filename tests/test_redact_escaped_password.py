"""A conninfo password written with backslash escapes (`password=se\\ cret`, which libpq reads as
`se cret`) is redacted whole, wherever pgtool shows the DSN."""

from __future__ import annotations

from psycopg.conninfo import conninfo_to_dict

from pgharness import run_pgtool
from pgtool.config import redact_dsn


def test_an_escaped_space_does_not_leave_half_the_password_visible(cluster):
    dsn = cluster.dsn() + r" password=topse\ cretXYZ"
    assert conninfo_to_dict(dsn)["password"] == "topse cretXYZ"  # libpq's reading
    assert "cretXYZ" not in redact_dsn(dsn)
    assert "cretXYZ" not in redact_dsn(r"password = 'a' sslpassword=x\ cretXYZ")
    # `status` prints the target DSN, redacted (the local cluster ignores the password).
    proc = run_pgtool("status", "--dsn", dsn)
    assert "password=***" in proc.stdout, proc.stdout + proc.stderr
    assert "cretXYZ" not in proc.stdout + proc.stderr
