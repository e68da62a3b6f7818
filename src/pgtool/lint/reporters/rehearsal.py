"""The rehearsal report (`--rehearse`): after the lint report in text; a `rehearsal` key in JSON."""

from __future__ import annotations

import json
from typing import Any, TextIO

from pgtool.lint.engine import LintResult
from pgtool.lint.rehearse import Rehearsal, StatementRun
from pgtool.lint.rehearse_compare import PG_LOCK_MODES
from pgtool.lint.rehearse_probe import Lock

FORMATS = ("text", "json")


def _lock_text(run: StatementRun) -> list[str]:
    shown = []
    for lock in run.locks:
        mode = PG_LOCK_MODES.get(lock.mode, lock.mode)
        name = lock.name or f"relation {lock.oid}"
        if lock.oid in run.new_relations:
            name += " (created by the migration)"
        shown.append(f"{mode} on {name}" + ("" if lock.granted else " (waited for)"))
    return shown


def _bytes(count: int | None) -> str:
    if count is None:
        return "?"
    size = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} B"


def statement_dict(run: StatementRun) -> dict[str, Any]:
    return {
        "path": run.path,
        "line": run.line,
        "statement": run.sql,
        "status": run.status,
        "error": run.error,
        "in_transaction": run.in_transaction,
        "duration_s": round(run.duration_s, 6),
        "wal_bytes": run.wal_bytes,
        "locks": [_lock_dict(run, lock) for lock in run.locks],
        "rewritten": run.rewritten,
        "probe_table": run.probe_table,
        "reader_blocked_s": run.reader_blocked_s,
        "writer_blocked_s": run.writer_blocked_s,
        "probe_notes": run.probe_notes,
        "predicted": {
            "lock": run.prediction.lock,
            "rewrite": run.prediction.rewrite,
            "rules": run.prediction.rules,
            "source": run.prediction.source,
        },
        "mismatches": run.mismatches,
    }


def _lock_dict(run: StatementRun, lock: Lock) -> dict[str, Any]:
    """One lock the statement held, by relation name and PostgreSQL's name for the mode."""
    return {
        "relation": lock.name,
        "mode": PG_LOCK_MODES.get(lock.mode, lock.mode),
        "granted": lock.granted,
        "created_by_migration": lock.oid in run.new_relations,
    }


def rehearsal_dict(rehearsal: Rehearsal) -> dict[str, Any]:
    return {
        "template": rehearsal.template,
        "copy": rehearsal.copy,
        "copy_dropped": rehearsal.dropped,
        "mismatches": rehearsal.mismatches,
        "failed": rehearsal.failed,
        "statements": [statement_dict(s) for s in rehearsal.statements],
    }


def write(result: LintResult, rehearsal: Rehearsal, fmt: str, out: TextIO, *, color: bool = False) -> None:
    if fmt == "json":
        from pgtool.lint.reporters.jsonout import finding_dict

        payload = {
            "files": result.files,
            "findings": [finding_dict(f) for f in result.findings],
            "suppressed": [{**finding_dict(f), "reason": f.reason} for f in result.suppressed],
            "rehearsal": rehearsal_dict(rehearsal),
        }
        out.write(json.dumps(payload, indent=2) + "\n")
        return
    from pgtool.lint.reporters.text import write as text_write

    text_write(result, out, color=color)
    out.write(f"\nrehearsal on {rehearsal.copy}, a copy of {rehearsal.template}:\n")
    for run in rehearsal.statements:
        out.write(f"{run.path}:{run.line}: {run.sql}\n")
        if run.status != "ok":
            out.write(f"    {run.status}" + (f": {run.error}" if run.error else "") + "\n")
            if run.status != "failed":
                continue
        where = "" if run.in_transaction else " (outside a transaction block)"
        out.write(f"    ran {run.duration_s:.3f} s{where}, WAL {_bytes(run.wal_bytes)}")
        out.write(f", rewrote {', '.join(run.rewritten)}\n" if run.rewritten else "\n")
        locks = _lock_text(run)
        out.write(f"    locks: {'; '.join(locks) if locks else 'none on user relations'}\n")
        if run.probe_table:
            reads = f"{run.reader_blocked_s or 0:.3f} s"
            writes = "n/a" if run.writer_blocked_s is None else f"{run.writer_blocked_s:.3f} s"
            out.write(f"    probe on {run.probe_table}: reads blocked {reads}, writes blocked {writes}\n")
        for note in run.probe_notes:
            out.write(f"    note: {note}\n")
        predicted = run.prediction
        said = predicted.lock or "no blocking lock"
        if predicted.rewrite:
            said += ", a rewrite"
        source = f" ({predicted.source})" if predicted.source else ""
        out.write(f"    predicted: {said}{source}\n")
        for problem in run.mismatches:
            out.write(f"    MISMATCH: {problem}\n")
    dropped = "dropped" if rehearsal.dropped else "NOT dropped"
    out.write(
        f"{len(rehearsal.statements)} statement(s) rehearsed: {rehearsal.mismatches} mismatch(es), "
        f"{rehearsal.failed} failed; copy {dropped}\n"
    )
