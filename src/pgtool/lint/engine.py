"""The lint engine: parse each file once with libpg_query (pglast's JSON parse tree), walk the
statements in order, run the registered rules, then apply ignore comments.

The tree stays plain dicts: building pglast's node objects costs several times more than the parse.
pglast itself is imported on first use, so importing this module is cheap.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from typing import Any

from pgtool.lint import dynamic, ignores, parse
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
    findings: list[Finding] = field(default_factory=list)
    suppressed: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(1 for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> int:
        return sum(1 for f in self.findings if f.severity == "warning")


def lint_files(paths: list[str], settings: LintSettings) -> LintResult:
    """Lint `paths` (files, in order) sharing one run state. Unreadable files raise OSError."""
    load()
    run = RunState()
    result = LintResult()
    # The parse trees are acyclic dicts freed by reference counting; the cyclic collector would only
    # rescan them over and over (measured: about a tenth of a 1,000-file run).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        _lint_each(paths, settings, run, result)
    finally:
        if gc_was_enabled:
            gc.enable()
    return result


def _lint_each(paths: list[str], settings: LintSettings, run: RunState, result: LintResult) -> None:
    for path in paths:
        data = parse.read_file(path, settings.max_file_size)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            good = Source(path, data[: exc.start].decode("utf-8"))
            findings, suppressed = (
                [_syntax_error(good, len(good.text), f"file is not valid UTF-8: {exc.reason}")],
                [],
            )
        else:
            del data
            findings, suppressed = lint_text(path, text, settings, run)
        result.files += 1
        result.findings.extend(findings)
        result.suppressed.extend(suppressed)


def lint_text(
    path: str, text: str, settings: LintSettings, run: RunState | None = None
) -> tuple[list[Finding], list[Finding]]:
    """Lint one file's text; returns (findings, suppressed findings)."""
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
    for stmt in statements:
        if stmt.kind == "TransactionStmt":
            ctx.has_transaction_block = True
        elif stmt.kind == "ViewStmt":
            ctx.views.add_rv(stmt.node.get("view", {}))
    if large:
        for stmt, (_kind, node, _start, _end) in zip(statements, parse.statements(text), strict=True):
            stmt.node = node
            _check_statement(ctx, stmt)
            stmt.node = _NO_TREE  # findings keep the statement's position, not its tree
    else:
        for stmt in statements:
            _check_statement(ctx, stmt)
    return _finish(ctx, statements)


def _check_statement(ctx: FileContext, stmt: Statement) -> None:
    _check(ctx, stmt)
    if stmt.kind == "DoStmt":
        _check_do(ctx, stmt)


def _syntax_error(source: Source, offset: int, message: str) -> Finding:
    line, column = source.line_col(min(max(offset, 0), len(source.text)))
    return Finding(source.path, line, column, "MIG000", "error", message, None, "", RULES["MIG000"].fix)


def _check(ctx: FileContext, stmt: Statement) -> None:
    kind = stmt.kind
    node = stmt.node
    if kind == "AlterTableStmt" and node.get("objtype") not in ALTERED_RELATIONS:
        return
    for check in STATEMENT_CHECKS.get(kind, ()):
        check(ctx, stmt)
    for check in STATEMENT_CHECKS.get("*", ()):
        check(ctx, stmt)
    if kind == "AlterTableStmt":
        relation = node.get("relation", {})
        for item in node.get("cmds", []):
            cmd = item.get("AlterTableCmd", {})
            for check in ALTER_CHECKS.get(cmd.get("subtype", ""), ()):
                check(ctx, stmt, relation, cmd)
            _track_cmd(ctx, relation, cmd)
    else:
        _track(ctx, stmt)


def _check_do(ctx: FileContext, stmt: Statement) -> None:
    body, language = dynamic.do_body(stmt.node)
    if body is None:
        return
    if language != "plpgsql":
        ctx.report(stmt, "MIG028", f"DO block in language {language} runs code the linter cannot read", None)
        return
    try:
        parts = dynamic.sql_in_do(body)
    except Exception as exc:
        ctx.report(
            stmt, "MIG028", f"DO block body could not be parsed as PL/pgSQL ({exc}); not checked", None
        )
        return
    for sql in parts:
        if sql is dynamic.DYNAMIC:
            ctx.report(
                stmt, "MIG028", "EXECUTE of a non-constant string runs SQL the linter cannot see", None
            )
            continue
        try:
            tree = parse.decode_tree(sql)
        except Exception as exc:
            ctx.report(stmt, "MIG028", f"SQL in DO block could not be parsed ({exc}); not checked", None)
            continue
        for raw in tree.get("stmts", []):
            if raw.get("stmt"):
                kind, node = next(iter(raw["stmt"].items()))
                inner = Statement(kind, node, stmt.start, stmt.end, stmt.index, in_do=True)
                _check(ctx, inner)


def _columns(expr: Any) -> set[str]:
    """Column names an expression references."""
    names: set[str] = set()
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            ref = node.get("ColumnRef")
            if ref is not None:
                fields = ref.get("fields", [])
                if fields and "String" in fields[-1]:
                    names.add(fields[-1]["String"].get("sval", ""))
                continue
            stack.extend(node.values())
    return names


def _not_null_columns(expr: Any) -> set[str]:
    """Columns a CHECK expression proves NOT NULL: `col IS NOT NULL`, alone or AND-ed."""
    if not isinstance(expr, dict):
        return set()
    test = expr.get("NullTest")
    if test is not None:
        if test.get("nulltesttype") == "IS_NOT_NULL" and "ColumnRef" in test.get("arg", {}):
            return _columns(test["arg"])
        return set()
    boolean = expr.get("BoolExpr")
    if boolean is not None and boolean.get("boolop") == "AND_EXPR":
        found: set[str] = set()
        for arg in boolean.get("args", []):
            found |= _not_null_columns(arg)
        return found
    return set()


def _record_check(run: RunState, table: str, expr: Any) -> None:
    run.checks.setdefault(table, []).append(_columns(expr))
    for column in _not_null_columns(expr):
        run.not_null_checks.add((table, column))


def _track_cmd(ctx: FileContext, relation: dict[str, Any], cmd: dict[str, Any]) -> None:
    """Update file and run state after one ALTER TABLE subcommand."""
    subtype = cmd.get("subtype")
    table = relation.get("relname", "")
    if subtype == "AT_AddConstraint":
        con = (cmd.get("def") or {}).get("Constraint", {})
        name = con.get("conname", "")
        if name:
            ctx.tx_constraints.add((table, name))
        if con.get("contype") == "CONSTR_CHECK":
            if con.get("skip_validation"):
                ctx.run.not_valid[(table, name)] = ("check", con.get("raw_expr"))  # type: ignore[assignment]
            else:
                _record_check(ctx.run, table, con.get("raw_expr"))
    elif subtype == "AT_ValidateConstraint":
        pending = ctx.run.not_valid.pop((table, cmd.get("name", "")), None)
        if pending is not None:
            _record_check(ctx.run, table, pending[1])
    elif subtype == "AT_AttachPartition" and ctx.is_new(relation):
        ctx.created.add_rv((cmd.get("def") or {}).get("PartitionCmd", {}).get("name", {}))


def _track(ctx: FileContext, stmt: Statement) -> None:
    """Update file and run state after a statement other than ALTER TABLE."""
    kind = stmt.kind
    node = stmt.node
    if kind == "CreateStmt":
        relation = node.get("relation", {})
        ctx.created.add_rv(relation)
        table = relation.get("relname", "")
        for element in node.get("tableElts", []):
            con = element.get("Constraint")
            if con and con.get("contype") == "CONSTR_CHECK" and not con.get("skip_validation"):
                _record_check(ctx.run, table, con.get("raw_expr"))
        spec = node.get("partspec")
        if spec:
            ctx.run.partition_keys[table] = {
                p.get("PartitionElem", {}).get("name", "") for p in spec.get("partParams", [])
            } - {""}
    elif kind == "CreateDomainStmt":
        names = [n.get("String", {}).get("sval", "") for n in node.get("domainname", [])]
        if names:
            ctx.domains.add(names[-2] if len(names) > 1 else None, names[-1])
    elif kind == "SelectStmt" and node.get("intoClause"):
        ctx.created.add_rv(node["intoClause"].get("rel", {}))
    elif kind == "CreateTableAsStmt":
        ctx.created.add_rv(node.get("into", {}).get("rel", {}))
    elif (
        kind == "RenameStmt" and node.get("renameType") == "OBJECT_TABLE" and ctx.is_new(node.get("relation"))
    ):
        ctx.created.add(node["relation"].get("schemaname"), node.get("newname", ""))
    elif kind == "CreateFunctionStmt":
        volatility = "volatile"
        for item in node.get("options", []):
            elem = item.get("DefElem", {})
            if elem.get("defname") == "volatility":
                volatility = elem.get("arg", {}).get("String", {}).get("sval", "volatile")
        names = node.get("funcname", [])
        if names:
            ctx.run.functions[names[-1].get("String", {}).get("sval", "")] = volatility
    elif kind == "VariableSetStmt" and node.get("name") == "lock_timeout":
        value = None
        if node.get("kind") == "VAR_SET_VALUE":
            args = node.get("args", [])
            value = _setting_value(args[0]) if args else None
        _set_lock_timeout(ctx, value, bool(node.get("is_local")))
    elif kind == "SelectStmt":
        for target in node.get("targetList", []):
            call = target.get("ResTarget", {}).get("val", {}).get("FuncCall")
            if not call:
                continue
            names = [n.get("String", {}).get("sval") for n in call.get("funcname", [])]
            args = call.get("args", [])
            if (
                names
                and names[-1] == "set_config"
                and len(args) == 3
                and _setting_value(args[0]) == "lock_timeout"
            ):
                is_local = "boolval" in args[2].get("A_Const", {}) and bool(
                    args[2]["A_Const"]["boolval"].get("boolval")
                )
                _set_lock_timeout(ctx, _setting_value(args[1]), is_local)
    elif kind == "TransactionStmt" and node.get("kind") in (
        "TRANS_STMT_COMMIT",
        "TRANS_STMT_ROLLBACK",
        "TRANS_STMT_COMMIT_PREPARED",
        "TRANS_STMT_ROLLBACK_PREPARED",
    ):
        ctx.tx_constraints.clear()
        ctx.tx_enum_values.clear()
        ctx.tx_enum_types.clear()
        if ctx.lock_timeout_local:
            ctx.lock_timeout = ctx.lock_timeout_local = False


def _setting_value(node: Any) -> str | None:
    const = node.get("A_Const") if isinstance(node, dict) else None
    if not const:
        return None
    if "sval" in const:
        return const["sval"].get("sval", "")
    if "ival" in const:
        return str(const["ival"].get("ival", 0))
    if "fval" in const:
        return const["fval"].get("fval", "0")
    return None


def _set_lock_timeout(ctx: FileContext, value: str | None, is_local: bool) -> None:
    enabled = value is not None and value.strip() not in ("", "0", "0s", "0ms", "0min")
    ctx.lock_timeout = enabled
    ctx.lock_timeout_local = enabled and is_local


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
