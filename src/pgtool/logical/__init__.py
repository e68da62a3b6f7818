"""Logical backups: `pgtool backup` (pg_dump per database, manifests, retention) and the dump
drill of `pgtool verify`.
"""
