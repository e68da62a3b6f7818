"""Physical backups: `pgtool basebackup` (pg_basebackup, checks, retention) and the base drill
of `pgtool verify --base`.
"""
