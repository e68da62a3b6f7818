"""What the benchmarks' reports share: per-round ratios and their median with a bootstrap interval, the
checkout a run measured, the raw times, and the report printed and written as markdown.

Rounds alternate the sides compared, so each round's ratio compares runs under the same load; the
median of those paired ratios, with its interval, is what a noisy shared machine can tell.
"""

from __future__ import annotations

import compileall
import random
import statistics
import subprocess
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def as_installed(*trees: Path) -> None:
    """Compile the bytecode of these package trees, as `pip install` does. The per-segment commands start
    a fresh interpreter each time, and under PYTHONDONTWRITEBYTECODE (set on this machine) an editable
    checkout would otherwise recompile every module edited since its last `.pyc`, on every call."""
    for tree in trees or (ROOT / "src" / "pgtool",):
        compileall.compile_dir(str(tree), quiet=1, force=False, legacy=False)


def paired_ratios(sides: Iterable[float], references: Iterable[float]) -> list[float]:
    """Each round's side / reference (the two lists hold the same rounds, in order)."""
    return [s / r for s, r in zip(sides, references, strict=True)]


def median_interval(ratios: list[float], draws: int = 4000, digits: int = 3) -> str:
    """A bootstrap 90% interval of the median: how far this run's median could be from the truth."""
    rng = random.Random(0)  # noqa: S311 - resampling, not secrets
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(draws))
    return f"{medians[draws // 20]:.{digits}f}-{medians[draws - 1 - draws // 20]:.{digits}f}x"


def checkout_commit() -> str:
    """The checkout's HEAD: pgtool runs from it, and other work may land on it during a long run."""
    out = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return out.stdout.strip() or "unknown"


def seconds(values: Iterable[float]) -> str:
    """Raw times as a report lists them: `1.23, 4.56`."""
    return ", ".join(f"{t:.2f}" for t in values)


def emit(lines: list[str], markdown: Path | None) -> None:
    """Print the report, and write it to `markdown` too when one was asked for (--markdown)."""
    text = "\n".join(lines)
    print(text)
    if markdown:
        markdown.write_text(text + "\n")
