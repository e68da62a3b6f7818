"""Migration linter on libpg_query (pglast)."""
