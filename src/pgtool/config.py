"""Connection settings and secret hygiene, stdlib only.

The DSN is resolved once, in this order: `--dsn`, `PGTOOL_DSN`, `DATABASE_URL`, then nothing at all,
which lets libpq apply its own `PG*` variables (PGHOST, PGUSER, PGPASSWORD, PGSERVICE, ...).
A DSN may be a URI (`postgresql://user@host/db`) or a key=value conninfo (`host=... dbname=...`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

DSN_ENV_VARS = ("PGTOOL_DSN", "DATABASE_URL")

# URI userinfo: scheme://user:secret@host -> scheme://user:***@host
_URI_PASSWORD = re.compile(r"(?P<pre>\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?P<post>@)", re.I)
# URI query parameter: ?password=secret&...  ?sslpassword=...
_QUERY_PASSWORD = re.compile(r"(?P<pre>[?&](?:ssl)?password=)(?P<pw>[^&\s]*)", re.I)
# conninfo: password=secret, sslpassword = 'se cr\'et', or a quote left open in a mistyped DSN.
# Unquoted, libpq reads a backslash as escaping the next character: `password=se\ cret` is "se cret".
_KV_PASSWORD = re.compile(
    r"(?P<pre>(?<![?&\w])(?:ssl)?password\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'?|(?:\\.|\S)+)", re.I | re.S
)

REDACTED = "***"


def redact_dsn(text: str) -> str:
    """Return `text` with every password inside a DSN (URI or conninfo) replaced by `***`.

    Safe to apply to any message: text without a DSN comes back unchanged.
    """
    text = _URI_PASSWORD.sub(lambda m: m["pre"] + REDACTED + m["post"], text)
    text = _QUERY_PASSWORD.sub(lambda m: m["pre"] + REDACTED, text)
    return _KV_PASSWORD.sub(lambda m: m["pre"] + REDACTED, text)


def resolve_dsn(cli_value: str | None, environ: dict[str, str] | None = None) -> str:
    """The DSN to use: the CLI value, else `PGTOOL_DSN`, else `DATABASE_URL`, else "" (libpq's PG* vars)."""
    env = os.environ if environ is None else environ
    if cli_value:
        return cli_value
    for name in DSN_ENV_VARS:
        if env.get(name):
            return env[name]
    return ""


@dataclass(frozen=True)
class Settings:
    """What every command shares, resolved once from CLI options and the environment."""

    dsn: str = ""
    pushgateway: str | None = None
    pg_bindir: str | None = None

    @property
    def safe_dsn(self) -> str:
        """The DSN for messages and logs, password removed."""
        return redact_dsn(self.dsn) if self.dsn else "(libpq defaults: PG* environment)"
