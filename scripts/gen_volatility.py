#!/usr/bin/env python3
"""Generate pgtool lint's volatility catalogue from a real PostgreSQL's pg_proc.

Usage: gen_volatility.py DSN [OUT_DIR]

Writes OUT_DIR/volatility_pg<major>.json (default OUT_DIR: src/pgtool/lint/data): the built-in
(pg_catalog) function names grouped by volatility. A name lands in "volatile" when any of its
overloads is VOLATILE, because the linter sees a call by name and cannot resolve the overload
without the argument types; the other names go to "stable" or "immutable" (the weakest of their
overloads). MIG002 reads this file for the PostgreSQL major given by --pg-version.

Run it against each supported major (15 and 18) on a fresh cluster and commit the output:
    python scripts/gen_volatility.py "host=/tmp port=5432 dbname=postgres user=postgres"
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import psycopg

QUERY = """
SELECT p.proname, string_agg(DISTINCT p.provolatile::text, '' ORDER BY p.provolatile::text)
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'pg_catalog' AND p.prokind = 'f'
GROUP BY p.proname
ORDER BY p.proname
"""


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 2
    dsn = argv[0]
    out_dir = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1] / "src/pgtool/lint/data"
    with psycopg.connect(dsn) as conn:
        major = int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000
        version = conn.execute("SHOW server_version").fetchone()[0]
        rows = conn.execute(QUERY).fetchall()
    groups: dict[str, list[str]] = {"volatile": [], "stable": [], "immutable": []}
    for name, kinds in rows:
        if "v" in kinds:
            groups["volatile"].append(name)
        elif "s" in kinds:
            groups["stable"].append(name)
        else:
            groups["immutable"].append(name)
    payload = {
        "generated_by": "scripts/gen_volatility.py",
        "server_version": version,
        "major": major,
        **groups,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"volatility_pg{major}.json"
    out.write_text(json.dumps(payload, indent=0, sort_keys=False) + "\n")
    print(
        f"{out}: {len(groups['volatile'])} volatile, {len(groups['stable'])} stable, "
        f"{len(groups['immutable'])} immutable function names"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
