"""Schema operations: bootstrap (extensions, roles), partitions, materialized views, reporting."""
