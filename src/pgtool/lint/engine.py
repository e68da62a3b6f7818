"""The lint engine: read each file (`parse`), walk its statements in order, run the registered rules
(`rules`) on each, let `state` record what the statement changed, then apply ignore comments.

The tree stays plain dicts: building pglast's node objects costs several times more than the parse.
pglast itself is imported on first use, so importing this module is cheap.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from typing import Any

from pgtool.lint import ignores, parse, state
from pgtool.lint.context import FileContext, Finding, RunState, Statement
from pgtool.lint.rules import ALTER_CHECKS, STATEMENT_CHECKS, load
from pgtool.lint.rules.catalog import RULES
from pgtool.lint.settings import LintSettings
from pgtool.lint.source import Source, first_token

# ALTER TABLE's grammar also serves ALTER TYPE (ADD ATTRIBUTE), ALTER VIEW, ALTER SEQUENCE...; only
# these object types hold rows a subcommand can rewrite or lock.
ALTERED_RELATIONS = {"OBJECT_TABLE", "OBJECT_MATVIEW", "OBJECT_INDEX"}
SNIPPET_LINES = 3
_NO_TREE: dict[str, Any] = {}  # a large file's statement between passes: never written to


@dataclass
class LintResult:
    files: int = 0
    context_files: int = 0  # read only for the facts later files rely on (--since)
    findings: list[Finding] = field(default_factory=list)
    suppressed: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(1 for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> int:
        return sum(1 for f in self.findings if f.severity == "warning")


def lint_files(
    paths: list[str], settings: LintSettings, report: set[str] | None = None, *, jobs: int | None = None
) -> LintResult:
    """Lint `paths` (files, in order) sharing one run state. Unreadable files raise OSError.

    With `report`, only those paths' findings are kept; the others are still read, in order, so
    the facts they establish (functions, validated constraints, partition keys) reach later files.
    `jobs`: 1 lints in this process only, 2 splits the files over two (`parallel`, same findings);
    None chooses 2 for long lists on a machine with two cores free to this process.
    """
    from pgtool.lint import parallel

    load()
    run = RunState()
    result = LintResult()
    # The parse trees are acyclic dicts freed by reference counting; the cyclic collector would only
    # rescan them over and over (measured: about a tenth of a 1,000-file run).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        if parallel.use_two(paths, jobs):
            parallel.lint_two(paths, settings, report, run, result, _lint_each, LintResult)
        else:
            _lint_each(paths, settings, run, result, report)
    finally:
        if gc_was_enabled:
            gc.enable()
    return result


def _lint_each(
    paths: list[str], settings: LintSettings, run: RunState, result: LintResult, report: set[str] | None
) -> None:
    for path in paths:
        data = parse.read_file(path, settings.max_file_size)
        if report is not None and path not in report:
            text = data.decode("utf-8", errors="replace")
            del data
            lint_text(path, text, settings, run, facts_only=True)
            result.context_files += 1
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            good = Source(path, data[: exc.start].decode("utf-8"))
            findings = [_syntax_error(good, len(good.text), f"file is not valid UTF-8: {exc.reason}")]
            suppressed: list[Finding] = []
        else:
            del data
            findings, suppressed = lint_text(path, text, settings, run)
        result.files += 1
        result.findings.extend(findings)
        result.suppressed.extend(suppressed)


def lint_text(
    path: str, text: str, settings: LintSettings, run: RunState | None = None, *, facts_only: bool = False
) -> tuple[list[Finding], list[Finding]]:
    """Lint one file's text; returns (findings, suppressed findings).

    `facts_only`: run the statements through the rules and state tracking (a DO block's statements
    are found by its rule) but report nothing: the file is context for the files after it.
    """
    load()
    # Editors on Windows save a UTF-8 byte order mark; migration runners strip it (Flyway,
    # Liquibase), and PostgreSQL would call it a syntax error. Columns then count as editors show them.
    text = text.removeprefix("\ufeff")
    source = Source(path, text)
    run = run if run is not None else RunState()
    if "\x00" in text:  # libpg_query reads a C string: everything after a NUL would go unchecked
        return [_syntax_error(source, text.index("\x00"), "file contains a NUL byte")], []
    # A large file is parsed twice, chunk by chunk, so no pass holds every statement's tree: the
    # first pass keeps what the checks need to know about the whole file, the second checks.
    large = len(text) > parse.SMALL
    statements: list[Statement] = []
    try:
        for index, (kind, node, start, end) in enumerate(parse.statements(text)):
            kept = node if not large or kind == "ViewStmt" else _NO_TREE
            statements.append(Statement(kind, kept, first_token(text, start, end), end, index))
    except parse.ParseFailure as exc:
        return [_syntax_error(source, exc.offset, exc.message)], []

    ctx = FileContext(source, settings, run, len(statements))
    state.survey(ctx, statements)
    if large:
        for stmt, (_kind, node, _start, _end) in zip(statements, parse.statements(text), strict=True):
            stmt.node = node
            check(ctx, stmt)
            stmt.node = _NO_TREE  # findings keep the statement's position, not its tree
    else:
        for stmt in statements:
            check(ctx, stmt)
    if facts_only:
        return [], []
    return _finish(ctx, statements)


def _syntax_error(source: Source, offset: int, message: str) -> Finding:
    line, column = source.line_col(min(max(offset, 0), len(source.text)))
    return Finding(source.path, line, column, "MIG000", "error", message, None, "", RULES["MIG000"].fix)


def check(ctx: FileContext, stmt: Statement) -> None:
    """Run the rules on one statement (ALTER TABLE subcommand by subcommand), then track it.

    Rules registered for every statement ("*") run last, so they can read the statement's findings.
    """
    kind = stmt.kind
    node = stmt.node
    if kind == "AlterTableStmt" and node.get("objtype") not in ALTERED_RELATIONS:
        return
    for rule_check in STATEMENT_CHECKS.get(kind, ()):
        rule_check(ctx, stmt)
    if kind == "AlterTableStmt":
        relation = node.get("relation", {})
        for item in node.get("cmds", []):
            cmd = item.get("AlterTableCmd", {})
            for rule_check in ALTER_CHECKS.get(cmd.get("subtype", ""), ()):
                rule_check(ctx, stmt, relation, cmd)
            state.track_cmd(ctx, relation, cmd)
    for rule_check in STATEMENT_CHECKS.get("*", ()):
        rule_check(ctx, stmt)
    if kind != "AlterTableStmt":
        state.track(ctx, stmt)


def _snippet(text: str, start: int, end: int) -> str:
    body = text[start:end].strip()
    lines = body.splitlines()
    if len(lines) > SNIPPET_LINES:
        return "\n".join([*lines[:SNIPPET_LINES], "..."])
    return body


def _finish(ctx: FileContext, statements: list[Statement]) -> tuple[list[Finding], list[Finding]]:
    source = ctx.source
    settings = ctx.settings
    text = source.text
    found_ignores: list[ignores.Ignore] = []
    findings: list[Finding] = []
    suppressed: list[Finding] = []
    if ignores.MARKER in text:
        spans = [(s.start, s.end) for s in statements]
        found_ignores, problems = ignores.collect(text, spans, source.line, RULES)
        for problem in problems:
            if settings.enabled(problem.rule):
                line, column = source.line_col(problem.offset)
                findings.append(
                    Finding(
                        source.path,
                        line,
                        column,
                        problem.rule,
                        settings.severity_of(problem.rule),
                        problem.message,
                        None,
                        "",
                        RULES[problem.rule].fix,
                    )
                )
    for stmt, rule, message, lock, fix in ctx.raw:
        if not settings.enabled(rule):
            continue
        line, column = source.line_col(stmt.start)
        finding = Finding(
            source.path,
            line,
            column,
            rule,
            settings.severity_of(rule),
            message,
            lock,
            _snippet(text, stmt.start, stmt.end),
            fix or RULES[rule].fix,
        )
        ignore = None
        for candidate in found_ignores:
            if rule in candidate.rules and (candidate.file_wide or candidate.statement == stmt.index):
                ignore = candidate
                break
        if ignore is None:
            findings.append(finding)
        else:
            ignore.used.add(rule)
            finding.reason = ignore.reason
            suppressed.append(finding)
    if settings.enabled("MIG091"):
        for ignore in found_ignores:
            unused = [r for r in ignore.rules if r not in ignore.used and settings.enabled(r)]
            if unused:
                line, column = source.line_col(ignore.offset)
                scope = "in this file" if ignore.file_wide else "on the statement it precedes"
                findings.append(
                    Finding(
                        source.path,
                        line,
                        column,
                        "MIG091",
                        settings.severity_of("MIG091"),
                        f"ignore of {','.join(unused)} suppresses nothing {scope}",
                        None,
                        "",
                        RULES["MIG091"].fix,
                    )
                )
    findings.sort(key=lambda f: (f.line, f.column, f.rule))
    suppressed.sort(key=lambda f: (f.line, f.column, f.rule))
    return findings, suppressed


__all__ = ["LintResult", "LintSettings", "lint_files", "lint_text"]
