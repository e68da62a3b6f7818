"""Apply the sample schema's migration files, each once, in order.

Each file is sent as one query string. A file holding several statements therefore runs as one implicit
transaction, together with its row in `pgtool_sample_migrations`; a `CREATE INDEX CONCURRENTLY` file holds
that single statement (it cannot run inside a transaction block) and is recorded right after it succeeds.
Its `IF NOT EXISTS` makes a retry after a crash between the two harmless.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from pgtool.errors import OperationError, error_line

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
LEDGER_TABLE = "pgtool_sample_migrations"

_LEDGER_DDL = f"""
CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} (
    version text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    """One migration file: `version` is its file name without `.sql` (e.g. `0003_orders`)."""

    version: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text()

    @property
    def concurrent(self) -> bool:
        """True when the file builds an index CONCURRENTLY (so it must run outside a transaction)."""
        import pglast

        return any(getattr(raw.stmt, "concurrent", False) is True for raw in pglast.parse_sql(self.sql))


def migrations() -> list[Migration]:
    """The sample schema's migrations in the order they apply."""
    return [Migration(p.stem, p) for p in sorted(MIGRATIONS_DIR.glob("*.sql"))]


def migration_files() -> list[Path]:
    """Paths of the migration files in apply order (what `pgtool lint` is run on)."""
    return [m.path for m in migrations()]


def use_schema(conn: psycopg.Connection[Any]) -> str:
    """The schema the sample lives in: the connection's current schema, or `public` (made the session's
    search_path) when there is none - pgtool's connections pin search_path to '' (pgtool.pg.conn).

    The sample's SQL names its objects without a schema, so it is for databases pgtool or the tests
    set up (bench: its own schema; demo and tests: public), not for a database another role owns.
    """
    row = conn.execute("SELECT pg_catalog.current_schema()").fetchone()
    if row and row[0]:
        return str(row[0])
    conn.execute("SELECT pg_catalog.set_config('search_path', 'public', false)")
    return "public"


def apply_schema(conn_or_dsn: psycopg.Connection[Any] | str) -> list[str]:
    """Create the sample schema in the connection's database (its current schema, normally `public`).

    conn_or_dsn: an open connection in autocommit mode (CONCURRENTLY index builds need it), or a DSN to
    open one with (`pgtool.pg.conn.connect`, closed afterwards).
    Returns the versions applied by this call; already applied ones (recorded in
    `pgtool_sample_migrations`) are skipped, so calling it again is a no-op returning [].
    Raises OperationError naming the failing file, ConnectError when a DSN cannot be reached.
    """
    if isinstance(conn_or_dsn, str):
        from pgtool.pg.conn import connect

        with connect(conn_or_dsn) as conn:
            return apply_schema(conn)
    conn = conn_or_dsn
    if not conn.autocommit:
        raise OperationError(
            "apply_schema needs a connection in autocommit mode",
            hint="open it with autocommit=True (CREATE INDEX CONCURRENTLY cannot run in a transaction)",
        )
    use_schema(conn)
    conn.execute(_LEDGER_DDL)
    done = {row[0] for row in conn.execute(f"SELECT version FROM {LEDGER_TABLE}")}
    applied: list[str] = []
    for migration in migrations():
        if migration.version in done:
            continue
        record = f"INSERT INTO {LEDGER_TABLE} (version) VALUES (%s)"
        try:
            if migration.concurrent:
                conn.execute(migration.sql)
                conn.execute(record, (migration.version,))
            else:
                with conn.transaction():
                    conn.execute(migration.sql)
                    conn.execute(record, (migration.version,))
        except psycopg.Error as exc:
            detail = error_line(exc)
            raise OperationError(f"sample migration {migration.path.name} failed: {detail}") from None
        applied.append(migration.version)
    return applied
