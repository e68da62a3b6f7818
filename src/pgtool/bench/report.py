"""Rendering a bench run: the text table, the JSON document, and the --output-dir files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pgtool.bench.run import BenchResult
from pgtool.bench.runner import ScenarioResult
from pgtool.bench.stats import Summary


def _r(value: float) -> float:
    return round(value, 4)


def scenario_json(result: ScenarioResult) -> dict[str, Any]:
    """One scenario in the issue's shape: baseline vs the best optimized variant."""
    base = result.variants[result.baseline]
    best = result.variants[result.best]
    return {
        "name": result.name,
        "baseline_p50_ms": _r(base.p50_ms),
        "optimized_p50_ms": _r(best.p50_ms),
        "baseline_p95_ms": _r(base.p95_ms),
        "optimized_p95_ms": _r(best.p95_ms),
        "speedup": round(result.speedup, 3),
        "iterations": result.iterations,
    }


def to_json(result: BenchResult) -> dict[str, Any]:
    """Exactly what `--format json` prints: rtt_ms, server_version, scenarios."""
    return {
        "rtt_ms": _r(result.rtt.p50_ms),
        "server_version": result.server_version,
        "scenarios": [scenario_json(s) for s in result.scenarios],
    }


def to_json_detailed(result: BenchResult) -> dict[str, Any]:
    """results.json: the JSON above plus every variant's statistics, notes, the machine and settings."""
    doc = to_json(result)
    for entry, scenario in zip(doc["scenarios"], result.scenarios, strict=True):
        entry["summary"] = scenario.summary
        entry["baseline_variant"] = scenario.baseline
        entry["optimized_variant"] = scenario.best
        entry["variants"] = {name: s.as_dict() for name, s in scenario.variants.items()}
        for name, ratio in scenario.paired.items():
            entry["variants"][name]["paired_speedup"] = round(ratio, 3)
        if scenario.notes:
            entry["notes"] = scenario.notes
    doc["rtt"] = result.rtt.as_dict()
    doc["target"] = result.target
    doc["settings"] = result.settings
    doc["machine"] = result.machine
    doc["skipped"] = result.skipped
    doc["started_at"] = result.started_at
    doc["duration_s"] = result.duration_s
    return doc


def _header(result: BenchResult) -> str:
    s = result.settings
    return (
        f"PostgreSQL {result.server_version} ({result.target}), scale {s['scale']:g}, "
        f"{s['iterations']} iterations per variant alternated A/B after {s['warmup']} warmup, "
        f"{s['clients']} client(s); round trip (SELECT 1) p50 {result.rtt.p50_ms:.3f} ms"
    )


def text_report(result: BenchResult) -> str:
    """The human table printed by default."""
    lines = [_header(result), ""]
    lines.append(
        f"{'scenario':<22}{'baseline p50':>13}{'p95':>9}{'optimized p50':>15}{'p95':>9}{'speedup':>9}"
        "  best variant"
    )
    for r in result.scenarios:
        base, best = r.variants[r.baseline], r.variants[r.best]
        lines.append(
            f"{r.name:<22}{base.p50_ms:>10.3f} ms{base.p95_ms:>9.3f}{best.p50_ms:>12.3f} ms"
            f"{best.p95_ms:>9.3f}{r.speedup:>8.2f}x  {r.best}"
        )
    lines.append("")
    lines.append("every variant (p50 ms / speedup of p50s; median of paired A/B ratios):")
    for r in result.scenarios:
        base = r.variants[r.baseline]
        parts = [
            f"{name} {s.p50_ms:.3f}"
            + (
                ""
                if name == r.baseline
                else f" ({base.p50_ms / s.p50_ms:.2f}x; {r.paired.get(name, 0):.2f}x)"
            )
            for name, s in r.variants.items()
        ]
        lines.append(f"  {r.name}: " + ", ".join(parts))
    notes = [(r.name, n) for r in result.scenarios for n in r.notes]
    notes += [(name, f"skipped: {why}") for name, why in result.skipped.items()]
    if notes:
        lines.append("")
        lines.append("notes:")
        lines.extend(f"  {name}: {note}" for name, note in notes)
    return "\n".join(lines) + "\n"


COLUMNS = (
    f"{'scenario':<22}{'variant':<24}{'iterations':>10}"
    f"{'p50_ms':>10}{'p95_ms':>10}{'p99_ms':>10}{'mean_ms':>10}"
)


def _row(scenario: str, variant: str, s: Summary) -> str:
    return (
        f"{scenario:<22}{variant:<24}{s.count:>10}{s.p50_ms:>10.3f}{s.p95_ms:>10.3f}{s.p99_ms:>10.3f}"
        f"{s.mean_ms:>10.3f}"
    )


def results_table(result: BenchResult, side: str) -> str:
    """baseline-results.txt / optimized-results.txt: one line per scenario (optimized: the best variant)."""
    title = "baseline" if side == "baseline" else "optimized (best variant per scenario)"
    lines = [f"# pgtool bench {title}", f"# {_header(result)}"]
    lines.append(COLUMNS + (f"{'speedup':>9}" if side == "optimized" else ""))
    for r in result.scenarios:
        if side == "baseline":
            lines.append(_row(r.name, r.baseline, r.variants[r.baseline]))
        else:
            lines.append(_row(r.name, r.best, r.variants[r.best]) + f"{r.speedup:>8.2f}x")
    return "\n".join(lines) + "\n"


def write_output_dir(result: BenchResult, directory: Path) -> list[Path]:
    """Write baseline-results.txt, optimized-results.txt and results.json into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "baseline-results.txt": results_table(result, "baseline"),
        "optimized-results.txt": results_table(result, "optimized"),
        "results.json": json.dumps(to_json_detailed(result), indent=2) + "\n",
    }
    written = []
    for name, text in files.items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written
