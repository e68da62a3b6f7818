"""pgtool: operations toolkit for production PostgreSQL.

Kept import-free on purpose: `pgtool archive-wal` runs once per WAL segment, so importing the
package must cost nothing beyond the interpreter's own start-up.
"""

__version__ = "0.1.0"
