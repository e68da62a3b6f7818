"""Fixtures for the deployment tests; they and the helpers live in `deploy_support` (importable by a
unique name: `from conftest import ...` would bind whichever conftest pytest loaded last)."""

from deploy_support import exporter_runs, pgbouncer_setup, processes, pushed_samples, rendered

__all__ = ["exporter_runs", "pgbouncer_setup", "processes", "pushed_samples", "rendered"]
