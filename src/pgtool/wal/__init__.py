"""WAL archiving: archive-wal and restore-wal (stdlib-only fast path), WAL file names and headers.

Modules (all stdlib-only; zstandard/lz4 are imported only to (de)compress):
    names     WAL file names: parse_wal_name, segment_name, segment arithmetic, LSNs
    header    the long page header of a segment (system identifier, segment size)
    archive   the archive directory layout: list_archive, find_archived, iter_content, read_archived
    codecs    zstd / lz4 compression of archived files
    (durable writing: pgtool.durable_write, shared with the rest of pgtool, stdlib only too)
    archiving the archive-wal operation;  restoring: the restore-wal operation
    fastcli   the argparse command line PostgreSQL runs once per segment
"""
