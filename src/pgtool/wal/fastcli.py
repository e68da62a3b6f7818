"""Stdlib-only command line for archive-wal and restore-wal (placeholder until the WAL issue lands)."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    print(f"pgtool: error: 'pgtool {argv[0]}' is not implemented yet", file=sys.stderr)
    return 2
