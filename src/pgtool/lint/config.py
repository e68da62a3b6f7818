"""Lint configuration: `pgtool.toml` ([lint] table) or pyproject.toml ([tool.pgtool.lint]).

    [tool.pgtool.lint]
    pg-version = 15                 # PostgreSQL major the migrations run on
    rules = ["MIG001", "MIG002"]    # run only these (default: all)
    disable = ["MIG027"]            # never report these
    exclude = ["migrations/legacy/*"]  # path globs not to lint
    assume-in-transaction = true    # the runner wraps each file in BEGIN/COMMIT
    max-file-size = "8MB"           # refuse larger files
    [tool.pgtool.lint.severity]
    MIG009 = "error"                # promote (or demote) a rule

Without --config, the first of pgtool.toml / pyproject.toml (with that table) found in the current
directory or its parents is used. A bad file or value is a UsageError (exit 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pgtool.errors import UsageError
from pgtool.lint.parse import parse_size
from pgtool.lint.rules.catalog import RULES
from pgtool.lint.settings import LintSettings
from pgtool.lint.volatility import SUPPORTED_MAJORS

KEYS = {"pg-version", "rules", "disable", "exclude", "severity", "assume-in-transaction", "max-file-size"}


def find_config(start: Path) -> Path | None:
    """pgtool.toml, or a pyproject.toml holding [tool.pgtool.lint], in `start` or a parent."""
    for directory in (start, *start.parents):
        candidate = directory / "pgtool.toml"
        if candidate.is_file():
            return candidate
        candidate = directory / "pyproject.toml"
        if (
            candidate.is_file()
            and "pgtool" in candidate.read_text(errors="replace")
            and _table(candidate, _read(candidate)) is not None
        ):
            return candidate
    return None


def _read(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise UsageError(f"cannot read config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config {path} is not valid TOML: {exc}") from None


def _table(path: Path, data: dict[str, Any]) -> dict[str, Any] | None:
    if path.name == "pyproject.toml":
        table: dict[str, Any] | None = data.get("tool", {}).get("pgtool", {}).get("lint")
        return table
    lint: dict[str, Any] = data.get("lint", {})
    return lint


def parse_rules(values: list[str], where: str) -> set[str]:
    """Rule ids from a list of (comma-separated) strings; unknown ids are a UsageError."""
    rules: set[str] = set()
    for value in values:
        for part in str(value).split(","):
            rule = part.strip().upper()
            if not rule:
                continue
            if rule not in RULES:
                raise UsageError(f"{where}: unknown rule {rule}", hint="see docs/lint.md for the rule list")
            rules.add(rule)
    return rules


def check_pg_version(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise UsageError(f"{where}: pg version must be a major version number, got {value!r}")
    major = int(value)
    if major not in SUPPORTED_MAJORS:
        raise UsageError(
            f"{where}: PostgreSQL {major} is not supported",
            hint=f"use {SUPPORTED_MAJORS[0]}..{SUPPORTED_MAJORS[-1]}",
        )
    return major


def load_settings(config: Path | None, *, cwd: Path | None = None) -> tuple[LintSettings, Path | None]:
    """Settings from `config` (or the discovered file); defaults when there is none."""
    settings = LintSettings()
    if config is None:
        config = find_config(cwd or Path.cwd())
        if config is None:
            return settings, None
    elif not config.is_file():
        raise UsageError(f"config file {config} does not exist")
    table = _table(config, _read(config))
    if table is None:
        return settings, config
    where = str(config)
    unknown = set(table) - KEYS
    if unknown:
        raise UsageError(
            f"{where}: unknown lint setting(s) {', '.join(sorted(unknown))}", hint=f"use {sorted(KEYS)}"
        )
    if "pg-version" in table:
        settings.pg_version = check_pg_version(table["pg-version"], where)
    if "rules" in table:
        settings.only = parse_rules(_strings(table["rules"], where, "rules"), where)
    if "disable" in table:
        settings.disabled = parse_rules(_strings(table["disable"], where, "disable"), where)
    if "exclude" in table:
        settings.exclude_paths = _strings(table["exclude"], where, "exclude")
    if "assume-in-transaction" in table:
        value = table["assume-in-transaction"]
        if not isinstance(value, bool):
            raise UsageError(f"{where}: assume-in-transaction must be true or false, got {value!r}")
        settings.assume_in_transaction = value
    if "max-file-size" in table:
        try:
            settings.max_file_size = parse_size(str(table["max-file-size"]))
        except ValueError:
            raise UsageError(
                f"{where}: max-file-size must be a size such as 8MB, got {table['max-file-size']!r}"
            ) from None
    severity = table.get("severity", {})
    if not isinstance(severity, dict):
        raise UsageError(f'{where}: severity must be a table of RULE = "error" | "warning"')
    for rule, level in severity.items():
        parse_rules([rule], where)
        if level not in ("error", "warning"):
            raise UsageError(f'{where}: severity of {rule} must be "error" or "warning", got {level!r}')
        settings.severity[rule.upper()] = level
    return settings, config


def _strings(value: Any, where: str, key: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise UsageError(f"{where}: {key} must be a list of strings")
