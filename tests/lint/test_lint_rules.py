"""Per rule: statements that must fire, and look-alikes that must not."""

from __future__ import annotations

import pytest
from lint_helpers import lint_sql, rules_of

FIRES = [
    # MIG001
    ("MIG001", "CREATE INDEX i ON orders (a);"),
    ("MIG001", "create unique index i on public.orders(a);"),
    ("MIG001", 'CREATE\n   INDEX\t"I" ON "Orders" USING gin ("Col");'),
    ("MIG001", "SELECT 1; CREATE INDEX i ON s.orders (a); SELECT 2;"),
    # MIG002
    ("MIG002", "ALTER TABLE orders ADD COLUMN r float8 DEFAULT random();"),
    ("MIG002", "ALTER TABLE orders ADD COLUMN u uuid DEFAULT gen_random_uuid();"),
    ("MIG002", "ALTER TABLE orders ADD COLUMN u uuid NOT NULL DEFAULT gen_random_uuid();"),
    ("MIG002", "ALTER TABLE orders ADD COLUMN t timestamptz DEFAULT clock_timestamp();"),
    ("MIG002", "ALTER TABLE orders ADD COLUMN n bigint DEFAULT nextval('orders_seq');"),
    ("MIG002", "ALTER TABLE orders ADD COLUMN n text DEFAULT pg_catalog.timeofday();"),
    ("MIG002", "ALTER TABLE orders ADD COLUMN n text DEFAULT 'x' || random()::text;"),
    ("MIG002", "ALTER TABLE orders ADD COLUMN n int DEFAULT my_func();"),
    # MIG003
    ("MIG003", "ALTER TABLE orders ALTER COLUMN total TYPE numeric(14,2);"),
    ("MIG003", "alter table orders alter total set data type bigint using total::bigint;"),
    # MIG004
    ("MIG004", "ALTER TABLE orders ADD CONSTRAINT c CHECK (total >= 0);"),
    ("MIG004", "ALTER TABLE orders ADD CHECK (total >= 0);"),
    ("MIG004", "ALTER TABLE orders ADD COLUMN q int CHECK (q > 0);"),
    # MIG005
    ("MIG005", "ALTER TABLE orders DROP COLUMN legacy;"),
    ("MIG005", "ALTER TABLE orders DROP legacy CASCADE;"),
    # MIG006
    ("MIG006", "ALTER TABLE orders RENAME COLUMN a TO b;"),
    ("MIG006", "ALTER TABLE orders RENAME a TO b;"),
    # MIG007
    ("MIG007", "SET lock_timeout = '1s';\nCREATE INDEX CONCURRENTLY i ON orders (a);"),
    ("MIG007", "BEGIN; DROP INDEX CONCURRENTLY i; COMMIT;"),
    ("MIG007", "SELECT 1; REINDEX INDEX CONCURRENTLY i;"),
    ("MIG007", "SELECT 1; ALTER TABLE p DETACH PARTITION c CONCURRENTLY;"),
    ("MIG007", "SELECT 1; VACUUM orders;"),
    ("MIG007", "DO $$ BEGIN EXECUTE 'CREATE INDEX CONCURRENTLY i ON t (a)'; END $$;"),
    # MIG008
    ("MIG008", "LOCK TABLE orders;"),
    ("MIG008", "lock orders in share mode;"),
    # MIG009
    ("MIG009", "ALTER TABLE items ADD CONSTRAINT fk FOREIGN KEY (order_id) REFERENCES orders (id);"),
    ("MIG009", "ALTER TABLE items ADD COLUMN order_id bigint REFERENCES orders (id);"),
    # MIG010
    (
        "MIG010",
        "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID;\nALTER TABLE t VALIDATE CONSTRAINT c;",
    ),
    (
        "MIG010",
        "ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES o (id) NOT VALID, VALIDATE CONSTRAINT f;",
    ),
    # MIG011
    ("MIG011", "ALTER TABLE orders ALTER COLUMN a SET NOT NULL;"),
    (
        "MIG011",
        "ALTER TABLE t ADD CONSTRAINT c CHECK (a IS NOT NULL) NOT VALID; ALTER TABLE t ALTER a SET NOT NULL;",
    ),
    # MIG012
    ("MIG012", "ALTER TABLE orders ADD CONSTRAINT u UNIQUE (a);"),
    ("MIG012", "ALTER TABLE orders ADD PRIMARY KEY (id);"),
    ("MIG012", "ALTER TABLE orders ADD COLUMN code text UNIQUE;"),
    ("MIG012", "ALTER TABLE r ADD CONSTRAINT ex EXCLUDE USING gist (during WITH &&);"),
    # MIG013
    ("MIG013", "ALTER TABLE orders ADD COLUMN a int NOT NULL;"),
    # MIG014
    ("MIG014", "ALTER TABLE orders ADD COLUMN id2 bigint GENERATED ALWAYS AS IDENTITY;"),
    ("MIG014", "ALTER TABLE orders ADD COLUMN n bigserial;"),
    ("MIG014", "ALTER TABLE orders ADD COLUMN g int GENERATED ALWAYS AS (a * 2) STORED;"),
    # MIG015 / MIG016
    ("MIG015", "DROP INDEX i;"),
    ("MIG015", "drop index if exists s.i, s.j;"),
    ("MIG016", "REINDEX INDEX i;"),
    ("MIG016", "REINDEX TABLE orders;"),
    # MIG017 / MIG018 / MIG019
    ("MIG017", "DROP TABLE orders;"),
    ("MIG017", "DROP TABLE IF EXISTS s.orders CASCADE;"),
    ("MIG018", "TRUNCATE orders;"),
    ("MIG018", "TRUNCATE TABLE a, b CASCADE;"),
    ("MIG019", "ALTER TABLE orders RENAME TO orders_old;"),
    # MIG020 / MIG021
    ("MIG020", "VACUUM FULL orders;"),
    ("MIG020", "VACUUM (FULL, ANALYZE) orders;"),
    ("MIG021", "CLUSTER orders USING orders_pkey;"),
    # MIG022 / MIG023
    ("MIG022", "ALTER TABLE orders SET TABLESPACE fast;"),
    ("MIG022", "ALTER INDEX orders_pkey SET TABLESPACE fast;"),
    ("MIG023", "ALTER TABLE orders SET LOGGED;"),
    ("MIG023", "ALTER TABLE orders SET UNLOGGED;"),
    # MIG024 / MIG025 / MIG026
    (
        "MIG024",
        "ALTER TABLE events ATTACH PARTITION events_2026 FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');",
    ),
    ("MIG025", "ALTER TABLE events DETACH PARTITION events_2020;"),
    ("MIG026", "REFRESH MATERIALIZED VIEW daily;"),
    # MIG029
    ("MIG029", "ALTER DOMAIN positive ADD CONSTRAINT p CHECK (VALUE > 0);"),
    ("MIG029", "ALTER DOMAIN s.email SET NOT NULL;"),
    # MIG030
    ("MIG030", "ALTER TYPE status ADD VALUE 'shipped'; UPDATE orders SET status = 'shipped' WHERE id = 1;"),
    # MIG028
    ("MIG028", "DO $$ BEGIN EXECUTE format('ALTER TABLE %I DROP COLUMN x', 't'); END $$;"),
    ("MIG028", "DO $$ DECLARE q text := 'x'; BEGIN EXECUTE q; END $$;"),
    ("MIG028", "DO LANGUAGE plpython3u $$ plpy.execute('select 1') $$;"),
]

MUST_NOT_FIRE = [
    # comments and string literals that look like unsafe DDL
    ("MIG001", "-- CREATE INDEX i ON orders (a);\nSELECT 1;"),
    ("MIG001", "/* CREATE INDEX i ON orders (a); */ SELECT 1;"),
    ("MIG001", "SELECT 'CREATE INDEX i ON orders (a)';"),
    ("MIG001", "INSERT INTO notes VALUES ($$ALTER TABLE t DROP COLUMN x; CREATE INDEX i ON t (a)$$);"),
    ("MIG001", "CREATE INDEX CONCURRENTLY i ON orders (a);"),
    ("MIG001", "CREATE TABLE fresh (a int);\nCREATE INDEX i ON fresh (a);"),
    ("MIG001", 'CREATE TABLE "Fresh" (a int); CREATE INDEX i ON "Fresh" (a);'),
    ("MIG001", "CREATE TABLE s.fresh (a int); CREATE INDEX i ON s.fresh (a);"),
    ("MIG001", "SELECT * INTO copy FROM orders; CREATE INDEX i ON copy (a);"),
    ("MIG001", "CREATE TABLE c AS SELECT * FROM orders; CREATE INDEX i ON c (a);"),
    ("MIG001", "CREATE TABLE p (a int) PARTITION BY RANGE (a); CREATE INDEX ON p (a);"),
    ("MIG001", "CREATE INDEX measurements_at ON ONLY measurements (at);"),
    # function bodies are not run by the migration
    (
        "MIG005",
        "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN ALTER TABLE t DROP COLUMN x; END $$;",
    ),
    ("MIG001", "CREATE PROCEDURE p() LANGUAGE sql AS $$ CREATE INDEX i ON t (a) $$;"),
    # MIG002: constants and STABLE functions do not rewrite
    ("MIG002", "ALTER TABLE orders ADD COLUMN a timestamptz DEFAULT now();"),
    ("MIG002", "ALTER TABLE orders ADD COLUMN a timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP;"),
    ("MIG002", "ALTER TABLE orders ADD COLUMN a text DEFAULT 'new';"),
    ("MIG002", "ALTER TABLE orders ADD COLUMN a int DEFAULT 0;"),
    ("MIG002", "ALTER TABLE orders ADD COLUMN a date DEFAULT '2026-01-01'::date;"),
    ("MIG002", "ALTER TABLE orders ADD COLUMN a timestamptz DEFAULT statement_timestamp();"),
    ("MIG002", "ALTER TABLE orders ADD COLUMN a text DEFAULT NULL;"),
    ("MIG002", "ALTER TABLE orders ADD COLUMN a text DEFAULT lower('X');"),
    ("MIG002", "ALTER TABLE orders ALTER COLUMN a SET DEFAULT gen_random_uuid();"),
    ("MIG002", "CREATE TABLE fresh (id int); ALTER TABLE fresh ADD COLUMN u uuid DEFAULT gen_random_uuid();"),
    ("MIG002", "CREATE TABLE t (u uuid DEFAULT gen_random_uuid());"),
    (
        "MIG002",
        "CREATE FUNCTION tenant() RETURNS int STABLE LANGUAGE sql AS 'select 1';\n"
        "ALTER TABLE orders ADD COLUMN tenant int DEFAULT tenant();",
    ),
    ("MIG002", "ALTER TYPE addr ADD ATTRIBUTE u uuid;"),
    # MIG003 / MIG005 / MIG006 on new tables, or other objects
    ("MIG003", "CREATE TABLE fresh (a int); ALTER TABLE fresh ALTER COLUMN a TYPE bigint;"),
    ("MIG005", "CREATE TABLE fresh (a int, b int); ALTER TABLE fresh DROP COLUMN b;"),
    ("MIG005", "ALTER TABLE orders DROP CONSTRAINT c;"),
    ("MIG006", "ALTER TABLE orders RENAME CONSTRAINT a TO b;"),
    ("MIG006", "CREATE TABLE fresh (a int); ALTER TABLE fresh RENAME COLUMN a TO b;"),
    # MIG004 / MIG009: NOT VALID is the safe form
    ("MIG004", "ALTER TABLE orders ADD CONSTRAINT c CHECK (total >= 0) NOT VALID;"),
    ("MIG004", "ALTER TABLE orders VALIDATE CONSTRAINT c;"),
    ("MIG009", "ALTER TABLE items ADD CONSTRAINT fk FOREIGN KEY (o) REFERENCES orders (id) NOT VALID;"),
    ("MIG009", "CREATE TABLE items (o bigint REFERENCES orders (id));"),
    # MIG007: alone in its file
    ("MIG007", "CREATE INDEX CONCURRENTLY i ON orders (a);"),
    ("MIG007", "-- only a comment\nDROP INDEX CONCURRENTLY IF EXISTS i;\n-- trailing"),
    ("MIG007", "REINDEX INDEX CONCURRENTLY i;"),
    ("MIG007", "SELECT 1; REFRESH MATERIALIZED VIEW CONCURRENTLY mv;"),
    ("MIG007", "ANALYZE orders; SELECT 1;"),
    # MIG008: a new table
    ("MIG008", "CREATE TABLE fresh (a int); LOCK TABLE fresh;"),
    # MIG010: VALIDATE in a later transaction
    (
        "MIG010",
        "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID;\nCOMMIT;\n"
        "ALTER TABLE t VALIDATE CONSTRAINT c;",
    ),
    ("MIG010", "ALTER TABLE t VALIDATE CONSTRAINT c;"),
    # MIG011: a validated CHECK (col IS NOT NULL) earlier in the run
    ("MIG011", "ALTER TABLE t ADD CONSTRAINT c CHECK (a IS NOT NULL); ALTER TABLE t ALTER a SET NOT NULL;"),
    ("MIG011", "ALTER TABLE t ALTER COLUMN a DROP NOT NULL;"),
    # MIG012: USING INDEX
    ("MIG012", "ALTER TABLE orders ADD CONSTRAINT u UNIQUE USING INDEX orders_u;"),
    ("MIG012", "ALTER TABLE orders ADD CONSTRAINT pk PRIMARY KEY USING INDEX orders_pk;"),
    # MIG013: with a default, or nullable
    ("MIG013", "ALTER TABLE orders ADD COLUMN a int NOT NULL DEFAULT 0;"),
    ("MIG013", "ALTER TABLE orders ADD COLUMN a int;"),
    # MIG014: a virtual generated column (PostgreSQL 18) does not rewrite
    ("MIG014", "ALTER TABLE orders ADD COLUMN g int GENERATED ALWAYS AS (a * 2) VIRTUAL;"),
    ("MIG014", "CREATE TABLE fresh (id bigserial); ALTER TABLE fresh ADD COLUMN n serial;"),
    # MIG015-MIG017
    ("MIG015", "DROP INDEX CONCURRENTLY i;"),
    ("MIG016", "REINDEX (CONCURRENTLY) INDEX i;"),
    ("MIG016", "REINDEX TABLE CONCURRENTLY orders;"),
    ("MIG017", "CREATE TABLE tmp (a int); DROP TABLE tmp;"),
    ("MIG017", "DROP VIEW v;"),
    # MIG019: a view with the old name keeps old code working
    ("MIG019", "ALTER TABLE orders RENAME TO purchases; CREATE VIEW orders AS SELECT * FROM purchases;"),
    # MIG020
    ("MIG020", "VACUUM (ANALYZE) orders;"),
    ("MIG020", "ANALYZE orders;"),
    # MIG024: a validated CHECK on the partition
    (
        "MIG024",
        "ALTER TABLE e26 ADD CONSTRAINT b CHECK (at >= '2026-01-01' AND at < '2027-01-01');\n"
        "ALTER TABLE events ATTACH PARTITION e26 FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');",
    ),
    ("MIG024", "CREATE TABLE e26 (at date); ALTER TABLE events ATTACH PARTITION e26 DEFAULT;"),
    # MIG025 / MIG026
    ("MIG025", "ALTER TABLE events DETACH PARTITION e20 CONCURRENTLY;"),
    ("MIG026", "REFRESH MATERIALIZED VIEW CONCURRENTLY daily;"),
    ("MIG026", "CREATE MATERIALIZED VIEW mv AS SELECT 1 AS a WITH NO DATA; REFRESH MATERIALIZED VIEW mv;"),
    # MIG029
    ("MIG029", "ALTER DOMAIN positive ADD CONSTRAINT p CHECK (VALUE > 0) NOT VALID;"),
    ("MIG029", "CREATE DOMAIN positive AS int; ALTER DOMAIN positive ADD CONSTRAINT p CHECK (VALUE > 0);"),
    ("MIG029", "ALTER DOMAIN positive DROP NOT NULL;"),
    # MIG028: constant EXECUTE is read
    ("MIG028", "DO $$ BEGIN EXECUTE 'SELECT 1'; END $$;"),
    ("MIG028", "DO $$ BEGIN PERFORM 1; END $$;"),
]


@pytest.mark.parametrize(("rule", "sql"), FIRES, ids=[f"{r}-{i}" for i, (r, _) in enumerate(FIRES)])
def test_rule_fires(rule: str, sql: str) -> None:
    assert rule in rules_of(sql, disabled={"MIG027"}), sql


@pytest.mark.parametrize(
    ("rule", "sql"), MUST_NOT_FIRE, ids=[f"{r}-{i}" for i, (r, _) in enumerate(MUST_NOT_FIRE)]
)
def test_rule_does_not_fire(rule: str, sql: str) -> None:
    assert rule not in rules_of(sql), sql


def test_every_rule_has_a_firing_case() -> None:
    from pgtool.lint.rules.catalog import RULES

    covered = {rule for rule, _ in FIRES} | {"MIG000", "MIG027", "MIG090", "MIG091", "MIG092"}
    assert set(RULES) == covered


def test_core_rules_are_errors_and_the_rest_warnings() -> None:
    from pgtool.lint.rules.catalog import CORE_RULES, RULES

    for rule in RULES.values():
        expected = "error" if rule.id in CORE_RULES or rule.id == "MIG000" else "warning"
        assert rule.severity == expected, rule.id


def test_alter_table_checked_per_subcommand() -> None:
    sql = (
        "ALTER TABLE orders ADD COLUMN a timestamptz DEFAULT now(), "
        "ADD COLUMN b uuid DEFAULT gen_random_uuid(), "
        "ALTER COLUMN c TYPE bigint, DROP COLUMN d, ADD CONSTRAINT k CHECK (x > 0) NOT VALID;"
    )
    found = rules_of(sql, disabled={"MIG027"})
    assert sorted(found) == ["MIG002", "MIG003", "MIG005"]


def test_several_statements_on_one_line_get_their_own_columns() -> None:
    findings, _ = lint_sql("SELECT 1; ALTER TABLE t DROP COLUMN a;   DROP INDEX i;", disabled={"MIG027"})
    assert [(f.rule, f.line, f.column) for f in findings] == [("MIG005", 1, 11), ("MIG015", 1, 42)]


def test_position_points_at_first_token_not_leading_comment() -> None:
    sql = "SELECT 1;\n-- explain\n/* more */\n   ALTER TABLE t DROP COLUMN a;"
    findings, _ = lint_sql(sql, disabled={"MIG027"})
    assert [(f.line, f.column) for f in findings] == [(4, 4)]


def test_position_counts_characters_after_multibyte_text() -> None:
    sql = "SELECT 'héllo wörld ✓'; ALTER TABLE t DROP COLUMN a;"
    findings, _ = lint_sql(sql, disabled={"MIG027"})
    assert (findings[0].line, findings[0].column) == (1, sql.index("ALTER") + 1)


def test_every_finding_names_a_lock() -> None:
    for rule, sql in FIRES:
        findings, _ = lint_sql(sql)
        for finding in findings:
            if finding.rule.startswith("MIG0") and finding.rule not in ("MIG028", "MIG000"):
                assert finding.lock, (rule, finding)


def test_mig002_pg_version_matters() -> None:
    sql = "ALTER TABLE orders ADD COLUMN u uuid DEFAULT uuidv7();"
    assert "MIG002" in rules_of(sql, pg_version=18)
    # uuidv7() is not a PostgreSQL 15 built-in: still reported, as an unknown (assumed volatile) function
    findings, _ = lint_sql(sql, pg_version=15)
    assert any("assumed VOLATILE" in f.message for f in findings if f.rule == "MIG002")
    # before PostgreSQL 11 any default rewrites
    assert "MIG002" in rules_of("ALTER TABLE orders ADD COLUMN a int DEFAULT 0;", pg_version=10)
    assert "MIG002" not in rules_of("ALTER TABLE orders ADD COLUMN a int DEFAULT 0;", pg_version=11)


def test_mig002_names_the_function_and_volatility() -> None:
    findings, _ = lint_sql("ALTER TABLE orders ADD COLUMN r float8 DEFAULT random();", pg_version=15)
    message = next(f.message for f in findings if f.rule == "MIG002")
    assert "random() is VOLATILE in PostgreSQL 15" in message


def test_mig007_lists_why() -> None:
    findings, _ = lint_sql("SET lock_timeout = '1s'; CREATE INDEX CONCURRENTLY i ON t (a);")
    assert [f.rule for f in findings] == ["MIG007"]
    assert "2 statements" in findings[0].message


def test_mig027_lock_timeout() -> None:
    assert "MIG027" in rules_of("ALTER TABLE t ADD COLUMN a int;")
    assert "MIG027" not in rules_of("SET lock_timeout = '2s'; ALTER TABLE t ADD COLUMN a int;")
    assert "MIG027" not in rules_of("SET lock_timeout TO 2000; ALTER TABLE t ADD COLUMN a int;")
    assert "MIG027" not in rules_of(
        "SELECT set_config('lock_timeout', '2s', false); ALTER TABLE t ADD COLUMN a int;"
    )
    assert "MIG027" in rules_of("SET lock_timeout = 0; ALTER TABLE t ADD COLUMN a int;")
    assert "MIG027" in rules_of(
        "SET lock_timeout = '1s'; RESET lock_timeout; ALTER TABLE t ADD COLUMN a int;"
    )
    assert "MIG027" in rules_of(
        "BEGIN; SET LOCAL lock_timeout = '1s'; COMMIT; ALTER TABLE t ADD COLUMN a int;"
    )
    # weaker locks and new tables do not need it
    assert "MIG027" not in rules_of("CREATE INDEX CONCURRENTLY i ON t (a);")
    assert "MIG027" not in rules_of("ALTER TABLE t VALIDATE CONSTRAINT c;")
    assert "MIG027" not in rules_of("CREATE TABLE n (a int); ALTER TABLE n ADD COLUMN b int;")
    assert "MIG027" in rules_of("CREATE TABLE p_2026 PARTITION OF p FOR VALUES FROM (1) TO (2);")
    # once per file
    assert rules_of("ALTER TABLE t ADD COLUMN a int; ALTER TABLE u ADD COLUMN b int;").count("MIG027") == 1


def test_cross_file_state_in_one_run(tmp_path) -> None:
    from pgtool.lint.engine import lint_files
    from pgtool.lint.settings import LintSettings

    (tmp_path / "1.sql").write_text(
        "SET lock_timeout = '2s'; ALTER TABLE t ADD CONSTRAINT c CHECK (a IS NOT NULL) NOT VALID;"
    )
    (tmp_path / "2.sql").write_text("ALTER TABLE t VALIDATE CONSTRAINT c;")
    (tmp_path / "3.sql").write_text("SET lock_timeout = '2s'; ALTER TABLE t ALTER COLUMN a SET NOT NULL;")
    result = lint_files([str(tmp_path / n) for n in ("1.sql", "2.sql", "3.sql")], LintSettings())
    assert [f.rule for f in result.findings] == []
    result = lint_files([str(tmp_path / n) for n in ("1.sql", "3.sql")], LintSettings())
    assert [f.rule for f in result.findings] == ["MIG011"]


def test_syntax_error_is_mig000_with_position() -> None:
    findings, _ = lint_sql("SELECT 1;\nALTER TABLE t ADD COLUMN;\n")
    assert [(f.rule, f.severity, f.line) for f in findings] == [("MIG000", "error", 2)]
    assert "syntax error" in findings[0].message
    assert findings[0].column == len("ALTER TABLE t ADD COLUMN") + 1


@pytest.mark.parametrize(
    "sql",
    [
        "\\echo use CREATE EXTENSION\nSELECT 1;",
        "SELECT 'unterminated",
        "SELECT $$",
        "SELECT 1 /* open",
        "\x00",
    ],
)
def test_broken_input_is_a_clean_mig000(sql: str) -> None:
    findings, _ = lint_sql(sql)
    assert [f.rule for f in findings] == ["MIG000"]


def test_rules_and_disabled_settings() -> None:
    sql = "ALTER TABLE t DROP COLUMN a; DROP INDEX i;"
    assert sorted(rules_of(sql, only={"MIG005"})) == ["MIG005"]
    assert "MIG005" not in rules_of(sql, disabled={"MIG005"})
    findings, _ = lint_sql(sql, severity={"MIG015": "error"}, disabled={"MIG027"})
    assert {f.rule: f.severity for f in findings} == {"MIG005": "error", "MIG015": "error"}


def test_large_non_ascii_file_positions() -> None:
    """Thousands of statements after multibyte text: right positions, linear time (no hang)."""
    lines = [f"INSERT INTO t VALUES ('é{i}✓');" for i in range(20000)]
    lines.append("ALTER TABLE t DROP COLUMN a;")
    findings, _ = lint_sql("\n".join(lines), disabled={"MIG027"})
    assert [(f.rule, f.line, f.column) for f in findings] == [("MIG005", 20001, 1)]
    findings, _ = lint_sql(
        "SELECT 'ü';\nSELECT 'ß'; DROP INDEX i; SELECT '✓'; DROP TABLE x;", disabled={"MIG027"}
    )
    assert [(f.rule, f.line, f.column) for f in findings] == [("MIG015", 2, 13), ("MIG017", 2, 39)]
