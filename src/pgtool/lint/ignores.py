"""`migration-lint` ignore comments: found with PostgreSQL's scanner, attached to statements.

Forms (`--` or `/* ... */`):
    -- migration-lint: ignore=MIG001,MIG003 reason="table is tiny, checked 2026-01-04"
    -- migration-lint: ignore-file=MIG027 reason="the runner sets lock_timeout"

A statement-level ignore applies to the statement that follows it; a comment inside a statement, or
after a statement at the end of its line, applies to that statement. The reason is mandatory: without one
the ignore does not apply (MIG090). An ignore that suppresses nothing is reported (MIG091), as is one
that cannot be read or names an unknown rule (MIG092).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

MARKER = "migration-lint:"


@dataclass
class Ignore:
    offset: int  # character offset of the comment
    rules: list[str]
    reason: str
    file_wide: bool
    statement: int | None = None  # index of the statement it applies to
    used: set[str] = field(default_factory=set)


@dataclass
class Problem:
    offset: int
    rule: str  # MIG090 / MIG092
    message: str


def _comment_body(text: str) -> str:
    if text.startswith("--"):
        return text[2:].strip()
    body = text[2:]
    if body.endswith("*/"):
        body = body[:-2]
    return body.strip().lstrip("*").strip()


def parse_comment(text: str, offset: int, known: Mapping[str, object]) -> tuple[Ignore | None, list[Problem]]:
    """Read one comment; (None, []) when it is not a migration-lint comment.

    At most one MIG092 (malformed) and one MIG090 (no reason) problem per comment.
    """
    ignore, problems = _parse(text, offset, known)
    malformed = [p.message for p in problems if p.rule == "MIG092"]
    merged = [p for p in problems if p.rule != "MIG092"]
    if malformed:
        merged.insert(0, Problem(offset, "MIG092", "; ".join(malformed)))
    return ignore, merged


def _parse(text: str, offset: int, known: Mapping[str, object]) -> tuple[Ignore | None, list[Problem]]:
    body = _comment_body(text)
    if not body.startswith(MARKER):
        return None, []
    import shlex

    problems: list[Problem] = []
    try:
        words = shlex.split(body[len(MARKER) :])
    except ValueError as exc:
        return None, [Problem(offset, "MIG092", f"cannot read migration-lint comment: {exc}")]
    rules: list[str] = []
    reason = ""
    file_wide = False
    seen_ignore = False
    for word in words:
        key, sep, value = word.partition("=")
        key = key.strip().lower()
        if not sep:
            problems.append(
                Problem(offset, "MIG092", f"migration-lint comment: expected key=value, got {word!r}")
            )
        elif key in ("ignore", "ignore-file"):
            seen_ignore = True
            file_wide = file_wide or key == "ignore-file"
            for rule in value.split(","):
                rule = rule.strip().upper()
                if not rule:
                    continue
                if rule not in known:
                    problems.append(
                        Problem(offset, "MIG092", f"migration-lint comment names unknown rule {rule}")
                    )
                else:
                    rules.append(rule)
        elif key == "reason":
            reason = value.strip()
        else:
            problems.append(Problem(offset, "MIG092", f"migration-lint comment: unknown key {key!r}"))
    if not seen_ignore:
        problems.append(Problem(offset, "MIG092", "migration-lint comment without ignore= or ignore-file="))
        return None, problems
    if not reason:
        listed = ",".join(rules) or "nothing"
        problems.append(
            Problem(offset, "MIG090", f'ignore of {listed} has no reason="...", so it does not apply')
        )
        return None, problems
    if not rules:
        return None, problems
    return Ignore(offset=offset, rules=rules, reason=reason, file_wide=file_wide), problems


def collect(
    text: str, spans: list[tuple[int, int]], line_of: Callable[[int], int], known: Mapping[str, object]
) -> tuple[list[Ignore], list[Problem]]:
    """Find every migration-lint comment in `text` and attach it to a statement.

    spans: each top-level statement's (first token offset, end offset), in order. line_of: offset ->
    line number. Returns the ignores (statement index set) and the problems found reading them.
    """
    from pglast.parser import scan

    try:
        tokens = scan(text)
    except Exception:  # the scanner failed where the parser did not: no ignores can be read
        return [], []
    # The real end of each statement: its last non-comment token (spans run to the next statement).
    real_end = [start for start, _ in spans]
    comments = []
    index = 0
    for token in tokens:
        if token.name in ("SQL_COMMENT", "C_COMMENT"):
            comment = text[token.start : token.end + 1]
            if MARKER in comment:
                comments.append((token.start, comment))
            continue
        while index + 1 < len(spans) and token.start >= spans[index + 1][0]:
            index += 1
        if spans and spans[index][0] <= token.start:
            real_end[index] = max(real_end[index], token.end)
    ignores: list[Ignore] = []
    problems: list[Problem] = []
    for offset, comment in comments:
        ignore, found = parse_comment(comment, offset, known)
        problems.extend(found)
        if ignore is None:
            continue
        if not ignore.file_wide:
            ignore.statement = _target(offset, spans, real_end, line_of)
        ignores.append(ignore)
    return ignores, problems


def _target(
    offset: int, spans: list[tuple[int, int]], real_end: list[int], line_of: Callable[[int], int]
) -> int | None:
    previous = None
    for i, (start, _end) in enumerate(spans):
        if start > offset:
            if line_of(start) == line_of(offset):  # `...; /* ignore */ ALTER ...`: the next statement
                return i
            if previous is not None and (
                offset < real_end[previous] or line_of(offset) == line_of(real_end[previous])
            ):
                return previous
            return i
        previous = i
    if previous is not None and (
        offset < real_end[previous] or line_of(offset) == line_of(real_end[previous])
    ):
        return previous
    return None
