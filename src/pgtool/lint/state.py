"""How each statement changes what later statements are checked against.

After a statement's rules have run, `track` (or `track_cmd`, per ALTER TABLE subcommand) records
what it did: in the file's state (tables created, lock_timeout set, constraints added in the current
transaction, enum values added) and in the run's state, which carries across files (functions and
their volatility, validated CHECK constraints, partition keys). Rules only read this state.
"""

from __future__ import annotations

from typing import Any

from pgtool.lint.context import FileContext, RunState, Statement
from pgtool.lint.parsetree import stop_at, walk

TIMEOUTS = ("lock_timeout", "statement_timeout")
_ENDS_TRANSACTION = (
    "TRANS_STMT_COMMIT",
    "TRANS_STMT_ROLLBACK",
    "TRANS_STMT_COMMIT_PREPARED",
    "TRANS_STMT_ROLLBACK_PREPARED",
)


def survey(ctx: FileContext, statements: list[Statement]) -> None:
    """Facts about the whole file that rules need before its first statement: whether it controls its
    own transactions, where a BEGIN is left open, the views it creates (a renamed table's stand-in)."""
    open_begin: int | None = None
    for stmt in statements:
        if stmt.kind == "TransactionStmt":
            ctx.has_transaction_block = True
            kind = stmt.node.get("kind")
            if kind in ("TRANS_STMT_BEGIN", "TRANS_STMT_START"):
                open_begin = stmt.index if open_begin is None else open_begin
            elif kind in _ENDS_TRANSACTION or kind == "TRANS_STMT_PREPARE":
                open_begin = None
                if stmt is not statements[-1]:
                    ctx.several_transactions = True
        elif stmt.kind == "ViewStmt":
            ctx.views.add_rv(stmt.node.get("view", {}))
    ctx.unclosed_begin = open_begin


def _columns(expr: Any) -> set[str]:
    """Column names an expression references."""
    names: set[str] = set()
    for node in walk(expr, stop_at("ColumnRef")):
        fields = (node.get("ColumnRef") or {}).get("fields", [])
        if fields and "String" in fields[-1]:
            names.add(fields[-1]["String"].get("sval", ""))
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


def track_cmd(ctx: FileContext, relation: dict[str, Any], cmd: dict[str, Any]) -> None:
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
                ctx.run.not_valid[(table, name)] = ("check", con.get("raw_expr"))
            else:
                _record_check(ctx.run, table, con.get("raw_expr"))
    elif subtype == "AT_ValidateConstraint":
        pending = ctx.run.not_valid.pop((table, cmd.get("name", "")), None)
        if pending is not None:
            _record_check(ctx.run, table, pending[1])
    elif subtype == "AT_AttachPartition" and ctx.is_new(relation):
        ctx.created.add_rv((cmd.get("def") or {}).get("PartitionCmd", {}).get("name", {}))


def track(ctx: FileContext, stmt: Statement) -> None:
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
    elif kind == "VariableSetStmt" and node.get("name") in TIMEOUTS:
        value = None
        if node.get("kind") == "VAR_SET_VALUE":
            args = node.get("args", [])
            value = _setting_value(args[0]) if args else None
        _set_timeout(ctx, node["name"], value, bool(node.get("is_local")))
    elif kind == "SelectStmt":
        for target in node.get("targetList", []):
            call = target.get("ResTarget", {}).get("val", {}).get("FuncCall")
            if not call:
                continue
            names = [n.get("String", {}).get("sval") for n in call.get("funcname", [])]
            args = call.get("args", [])
            if names and names[-1] == "set_config" and len(args) == 3 and _setting_value(args[0]) in TIMEOUTS:
                is_local = "boolval" in args[2].get("A_Const", {}) and bool(
                    args[2]["A_Const"]["boolval"].get("boolval")
                )
                _set_timeout(ctx, str(_setting_value(args[0])), _setting_value(args[1]), is_local)
    elif kind == "CreateEnumStmt":
        ctx.tx_enum_types.add(type_name(node.get("typeName", [])))
    elif kind == "AlterEnumStmt" and not node.get("oldVal") and not stmt.in_do:
        name = type_name(node.get("typeName", []))
        # PostgreSQL 17+ lets a type created in the same transaction use its new values at once.
        if name not in ctx.tx_enum_types or ctx.pg_version < 17:
            ctx.tx_enum_values[node.get("newVal", "")] = name
    elif kind == "TransactionStmt" and node.get("kind") in _ENDS_TRANSACTION:
        ctx.tx_constraints.clear()
        ctx.tx_enum_values.clear()
        ctx.tx_enum_types.clear()
        for name in list(ctx.timeouts_local):
            ctx.timeouts.discard(name)
        ctx.timeouts_local.clear()


def type_name(items: list[Any]) -> str:
    """A type's name as written (schema-qualified when it was) from a list of String nodes."""
    return ".".join(i.get("String", {}).get("sval", "") for i in items)


def _setting_value(node: Any) -> str | None:
    const = node.get("A_Const") if isinstance(node, dict) else None
    if not const:
        return None
    if "sval" in const:
        return str(const["sval"].get("sval", ""))
    if "ival" in const:
        return str(const["ival"].get("ival", 0))
    if "fval" in const:
        return str(const["fval"].get("fval", "0"))
    return None


def _set_timeout(ctx: FileContext, name: str, value: str | None, is_local: bool) -> None:
    """SET [LOCAL] name = value / RESET name: 0 (or RESET, DEFAULT) turns the timeout off."""
    enabled = value is not None and value.strip() not in ("", "0", "0s", "0ms", "0min")
    ctx.timeouts.discard(name)
    ctx.timeouts_local.discard(name)
    if enabled:
        ctx.timeouts.add(name)
        if is_local:
            ctx.timeouts_local.add(name)
