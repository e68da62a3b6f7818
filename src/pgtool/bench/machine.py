"""What a run ran on: CPUs, load, versions. Stored with every results.json so numbers stay comparable."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def describe() -> dict[str, Any]:
    """nproc, CPU model, load average now, and the client-side versions (psycopg, libpq, Python, pgtool)."""
    import psycopg

    from pgtool import __version__

    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "load_average": load_average(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "psycopg": psycopg.__version__,
        "libpq": psycopg.pq.version(),
        "pgtool": __version__,
    }
