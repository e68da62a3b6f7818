"""WAL archiving: archive-wal and restore-wal (stdlib-only fast path), WAL file names and headers."""
