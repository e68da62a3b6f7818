"""Print a pg_stat_statements snapshot as a fixed-width table or JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from pgtool.top.snapshot import Snapshot

HEADERS = ("queryid", "calls", "mean ms", "total ms", "io ms", "hit%", "rows", "db", "query")
CLEAR = "\x1b[H\x1b[2J"


def shorten(query: str, width: int) -> str:
    """Whitespace collapsed, cut to `width` characters with an ellipsis."""
    text = " ".join(query.split())
    return text if len(text) <= width else text[: max(width - 3, 1)] + "..."


def render_json(snapshot: Snapshot) -> str:
    document = {
        "taken_at": datetime.fromtimestamp(snapshot.taken_at, UTC).isoformat(timespec="seconds"),
        "server_version": snapshot.server_version,
        "order": snapshot.order,
        "track_io_timing": snapshot.track_io_timing,
        "statements": [s.to_dict() for s in snapshot.statements],
    }
    return json.dumps(document, indent=2) + "\n"


def render_text(snapshot: Snapshot, *, width: int = 160) -> str:
    when = datetime.fromtimestamp(snapshot.taken_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    head = f"pgtool top  PostgreSQL {snapshot.server_version}  by {snapshot.order}  {when}"
    if snapshot.order == "io" and not snapshot.track_io_timing:
        head += "  (track_io_timing is off: io ms is 0, sorted by blocks read/written)"
    rows = [
        (
            str(s.queryid if s.queryid is not None else "-"),
            str(s.calls),
            f"{s.mean_ms:.2f}",
            f"{s.total_ms:.1f}",
            f"{s.io_ms:.1f}",
            "-" if s.hit_ratio is None else f"{s.hit_ratio * 100:.0f}",
            str(s.rows),
            s.database or "-",
        )
        for s in snapshot.statements
    ]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(HEADERS[:-1])]
    used = sum(widths) + 2 * len(widths)
    query_width = max(width - used, 20)
    numeric = {1, 2, 3, 4, 5, 6}

    def line(cells: tuple[str, ...]) -> str:
        parts = [
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=False))
        ]
        return "  ".join(parts)

    out = [head, "", line(HEADERS[:-1]) + "  " + HEADERS[-1]]
    for r, s in zip(rows, snapshot.statements, strict=True):
        out.append(line(r) + "  " + shorten(s.query, query_width))
    if not rows:
        out.append("(no statements recorded yet)")
    return "\n".join(out) + "\n"
