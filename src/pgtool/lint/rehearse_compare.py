"""The static prediction for one rehearsed statement, and how it is compared with what was measured.

The prediction is the strongest lock named by the statement's findings (the rule's lock), else, for
ALTER TABLE and CREATE INDEX, the lock PostgreSQL documents for them (`locks`), else none: a statement
nothing flagged. A rewrite is predicted by the rewrite rules. Only relations that existed before the
rehearsal count: a table the migration created itself has no readers to block.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pgtool.lint.context import Finding
from pgtool.lint.locks import (
    ACCESS_EXCLUSIVE,
    ACCESS_SHARE,
    EXCLUSIVE,
    ROW_EXCLUSIVE,
    ROW_SHARE,
    SHARE,
    SHARE_ROW_EXCLUSIVE,
    SHARE_UPDATE_EXCLUSIVE,
    STRENGTH,
    alter_table_cmd_lock,
    strongest,
)

if TYPE_CHECKING:
    from pgtool.lint.rehearse import StatementRun

# Rules whose finding means the table's data files are rewritten (a new relfilenode).
REWRITE_RULES = {"MIG002", "MIG003", "MIG020", "MIG021", "MIG023"}
PG_LOCK_MODES = {
    "AccessShareLock": ACCESS_SHARE,
    "RowShareLock": ROW_SHARE,
    "RowExclusiveLock": ROW_EXCLUSIVE,
    "ShareUpdateExclusiveLock": SHARE_UPDATE_EXCLUSIVE,
    "ShareLock": SHARE,
    "ShareRowExclusiveLock": SHARE_ROW_EXCLUSIVE,
    "ExclusiveLock": EXCLUSIVE,
    "AccessExclusiveLock": ACCESS_EXCLUSIVE,
}
_MODE = re.compile("|".join(sorted(STRENGTH, key=len, reverse=True)))


@dataclass
class Prediction:
    kind: str = ""
    sql: str = ""
    lock: str | None = None
    rewrite: bool = False
    rules: list[str] = field(default_factory=list)
    source: str = ""  # where the lock comes from: rule ids, or "lock model"
    relations: list[str] = field(default_factory=list)  # quoted names the statement mentions, in order


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def range_vars(node: Any) -> list[str]:
    """Quoted (schema-qualified when written so) names of the relations a statement mentions."""
    found: list[str] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            if "relname" in item and ("inh" in item or "relpersistence" in item):
                name = _quote(item["relname"])
                if item.get("schemaname"):
                    name = f"{_quote(item['schemaname'])}.{name}"
                if name not in found:
                    found.append(name)
                continue
            stack.extend(reversed(list(item.values())))
    return found


def _do_relations(node: dict[str, Any]) -> list[str]:
    """Relations the SQL of a DO block names (an EXECUTE of a non-constant string is not read)."""
    from pgtool.lint import dynamic, parse

    body, language = dynamic.do_body(node)
    if body is None or language != "plpgsql":
        return []
    names: list[str] = []
    try:
        for text in dynamic.sql_in_do(body):
            if text is not dynamic.DYNAMIC:
                names.extend(n for n in range_vars(parse.decode_tree(text)) if n not in names)
    except Exception:  # a body the linter cannot read (MIG028): no table to probe
        return names
    return names


def predictions(kind: str, node: dict[str, Any], findings: list[Finding]) -> Prediction:
    """What the linter expects of one statement, from its findings and the lock model."""
    relations = _do_relations(node) if kind == "DoStmt" else range_vars(node)
    found = Prediction(kind=kind, relations=relations)
    modes = [m for f in findings if f.lock for m in _MODE.findall(f.lock)]
    found.rules = sorted({f.rule for f in findings})
    found.rewrite = any(f.rule in REWRITE_RULES for f in findings) or kind == "TruncateStmt"
    if modes:
        found.lock = strongest(modes)
        found.source = ",".join(sorted({f.rule for f in findings if f.lock}))
    elif kind == "AlterTableStmt" and node.get("cmds"):
        found.lock = strongest([alter_table_cmd_lock(c.get("AlterTableCmd", {})) for c in node["cmds"]])
        found.source = "lock model"
    elif kind == "IndexStmt":
        found.lock = SHARE_UPDATE_EXCLUSIVE if node.get("concurrent") else SHARE
        found.source = "lock model"
    return found


def measured_lock(run: StatementRun) -> tuple[str | None, str]:
    """The strongest lock granted on a relation that existed before the rehearsal, and its relation."""
    best: tuple[str | None, str] = (None, "")
    for lock in run.locks:
        if not lock.granted or lock.oid in run.new_relations or lock.name is None:
            continue
        mode = PG_LOCK_MODES.get(lock.mode, lock.mode)
        if best[0] is None or STRENGTH.get(mode, 0) > STRENGTH.get(best[0], 0):
            best = (mode, lock.name)
    return best


def compare(run: StatementRun) -> list[str]:
    """Mismatches between the prediction and what the rehearsal measured (empty: they agree)."""
    if run.status != "ok":
        return []
    predicted = run.prediction
    mode, relation = measured_lock(run)
    seen = "seen while it ran" if run.in_transaction else "sampled while it ran (a brief lock can be missed)"
    problems: list[str] = []
    if predicted.lock is not None:
        if mode is None:
            problems.append(f"predicted {predicted.lock}, but no lock on an existing relation was {seen}")
        elif mode != predicted.lock:
            problems.append(f"predicted {predicted.lock} ({predicted.source}), took {mode} on {relation}")
    elif mode is not None and STRENGTH[mode] >= STRENGTH[SHARE]:
        problems.append(f"nothing predicted, but took {mode} on {relation}")
    blocked = [
        f"{who} {seconds:.3f} s"
        for who, seconds in (("reads", run.reader_blocked_s), ("writes", run.writer_blocked_s))
        if seconds
    ]
    if blocked and predicted.lock is None:
        problems.append(f"nothing predicted, but the probe was blocked: {', '.join(blocked)}")
    if predicted.rewrite and not run.rewritten:
        problems.append("predicted a rewrite, but no relfilenode changed")
    elif run.rewritten and not predicted.rewrite:
        problems.append(f"rewrote {', '.join(run.rewritten)} (new relfilenode), not predicted")
    return problems
