"""The `pgtool` command line: Typer only. Parsing, calling a capability, mapping errors to exit codes.

Nothing here holds logic; capabilities live in plain modules (pgtool.logical, pgtool.physical,
pgtool.wal, ...) that never import typer. Capability imports happen inside each command function so
that `pgtool --help` stays fast and imports neither psycopg nor pglast.
"""
