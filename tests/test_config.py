"""DSN resolution and redaction."""

from __future__ import annotations

import pytest

from pgtool.config import redact_dsn, resolve_dsn


@pytest.mark.parametrize(
    ("dsn", "secret"),
    [
        ("postgresql://app:hunter2@db:5432/shop", "hunter2"),
        ("postgres://app:p%40ss@db/shop?sslmode=require", "p%40ss"),
        ("postgresql://db/shop?user=app&password=hunter2&sslmode=require", "hunter2"),
        ("host=db user=app password=hunter2 dbname=shop", "hunter2"),
        ("host=db password = 'two words' dbname=shop", "two words"),
        ("host=db password='it\\'s' dbname=shop", "it\\'s"),
        ("cannot connect to host=db PASSWORD=hunter2", "hunter2"),
        ("host=db sslpassword=hunter2", "hunter2"),
        ("postgresql://db/shop?sslpassword=hunter2&sslmode=require", "hunter2"),
        ("host=x password='hunter2 unterminated", "hunter2"),
        ("host=x password=hun'ter2 dbname=x", "ter2"),
    ],
)
def test_redact_removes_password(dsn, secret):
    redacted = redact_dsn(dsn)
    assert secret not in redacted
    assert "***" in redacted


def test_redact_keeps_everything_else():
    assert redact_dsn("postgresql://app:x@db:5432/shop") == "postgresql://app:***@db:5432/shop"
    assert redact_dsn("host=db dbname=shop") == "host=db dbname=shop"
    assert redact_dsn("postgresql://app@db/shop") == "postgresql://app@db/shop"
    assert redact_dsn("plain message") == "plain message"


def test_resolve_order():
    env = {"PGTOOL_DSN": "host=a", "DATABASE_URL": "postgresql://b/x"}
    assert resolve_dsn("host=cli", env) == "host=cli"
    assert resolve_dsn(None, env) == "host=a"
    assert resolve_dsn(None, {"DATABASE_URL": "postgresql://b/x"}) == "postgresql://b/x"
    assert resolve_dsn(None, {}) == ""
