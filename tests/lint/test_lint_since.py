"""`pgtool lint --since GIT_REF` on a real temporary git repository."""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

import pytest

from pgharness import pgtool_argv
from pgtool.errors import UsageError
from pgtool.lint.run import run_lint

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
        check=True,
    )
    return proc.stdout


# The old files establish facts the new ones rely on: a partitioned table's key and a validated CHECK
# matching the partition bound (MIG024), a validated CHECK (col IS NOT NULL) (MIG011).
OLD = {
    "001_events.sql": "CREATE TABLE events (at date NOT NULL) PARTITION BY RANGE (at);\n"
    "CREATE TABLE events_2026 (at date NOT NULL);\n",
    "002_checks.sql": "ALTER TABLE events_2026 ADD CONSTRAINT b\n"
    "CHECK (at >= '2026-01-01' AND at < '2027-01-01') NOT VALID;\n"
    "ALTER TABLE events_2026 VALIDATE CONSTRAINT b;\n"
    "ALTER TABLE users ADD CONSTRAINT e CHECK (email IS NOT NULL) NOT VALID;\n"
    "ALTER TABLE users VALIDATE CONSTRAINT e;\n",
    "003_old_hazard.sql": "CREATE INDEX users_email ON users (email);\n",  # MIG001, already applied
}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "migrations").mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    for name, sql in OLD.items():
        (root / "migrations" / name).write_text(sql)
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "old migrations")
    git(root, "tag", "base")
    return root


def lint_json(repo: Path, since: str) -> dict:
    out = io.StringIO()
    run_lint([str(repo / "migrations")], output_format="json", since=since, out=out, cwd=repo)
    return json.loads(out.getvalue())


def test_only_changed_files_are_reported_with_facts_from_older_files(repo: Path) -> None:
    migrations = repo / "migrations"
    (migrations / "004_attach.sql").write_text(
        "SET lock_timeout = '2s';\n"
        "ALTER TABLE events ATTACH PARTITION events_2026 FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');\n"
        "ALTER TABLE users ALTER COLUMN email SET NOT NULL;\n"
    )
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "attach")
    (migrations / "005_uncommitted.sql").write_text("CREATE INDEX a ON accounts (x);\n")  # untracked

    report = lint_json(repo, "base")
    paths = {Path(f["path"]).name for f in report["findings"]}
    assert paths == {"005_uncommitted.sql"}  # 003's MIG001 is not reported; 004 is clean
    assert report["files"] == 2
    # Without the older files' facts the same new file is flagged: the facts are what keep it clean.
    alone = io.StringIO()
    run_lint([str(migrations / "004_attach.sql")], output_format="json", since="base", out=alone, cwd=repo)
    assert {"MIG011", "MIG024"} <= {f["rule"] for f in json.loads(alone.getvalue())["findings"]}


def test_modified_tracked_file_is_reported(repo: Path) -> None:
    (repo / "migrations" / "003_old_hazard.sql").write_text(
        "CREATE INDEX users_email ON users (email);\n-- x\n"
    )
    report = lint_json(repo, "base")
    assert [(Path(f["path"]).name, f["rule"]) for f in report["findings"]] == [
        ("003_old_hazard.sql", "MIG001")
    ]


def test_nothing_changed_passes(repo: Path) -> None:
    report = lint_json(repo, "HEAD")
    assert report["findings"] == [] and report["files"] == 0


def test_unknown_ref_is_a_usage_error(repo: Path) -> None:
    with pytest.raises(UsageError, match="unknown git revision 'no-such-branch'"):
        lint_json(repo, "no-such-branch")
    with pytest.raises(UsageError, match="not a git revision"):
        lint_json(repo, "--output=/tmp/x")


def test_cli_exit_codes(repo: Path, tmp_path: Path) -> None:
    (repo / "migrations" / "009_new.sql").write_text("CREATE INDEX a ON accounts (x);\n")
    cli = [*pgtool_argv(), "lint", "migrations", "--since"]
    proc = subprocess.run([*cli, "base"], cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    assert "009_new.sql" in proc.stdout and "003_old_hazard" not in proc.stdout
    proc = subprocess.run([*cli, "nope"], cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown git revision" in proc.stderr
    outside = tmp_path / "plain"
    (outside / "migrations").mkdir(parents=True)
    (outside / "migrations" / "1.sql").write_text("SELECT 1;\n")
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(tmp_path)}
    proc = subprocess.run([*cli, "main"], cwd=outside, capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and "needs a git repository" in proc.stderr
