"""The migration linter: a catalogue of unsafe statements (true positives) and of safe look-alikes
(false positives it must not report), with file:line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from shipyard import cli
from shipyard.database import (
    LintReport,
    MigrationError,
    lint_directory,
    lint_files,
    lint_migrations,
    lint_sql,
    local_migration_files,
)
from shipyard.database._lint import mask_sql, runs_in_one_transaction, statement_at_line

UNSAFE = [
    ("DROP TABLE legacy;", "drop-table"),
    ("ALTER TABLE events DROP COLUMN description;", "drop-column"),
    ("ALTER TABLE events DROP description;", "drop-column"),
    ("ALTER TABLE events RENAME COLUMN title TO name;", "rename-column"),
    ("ALTER TABLE events RENAME TO happenings;", "rename-table"),
    ("ALTER TABLE events ALTER COLUMN title TYPE varchar(200);", "alter-column-type"),
    ("ALTER TABLE events ALTER title SET DATA TYPE varchar(200);", "alter-column-type"),
    ("ALTER TABLE events ALTER COLUMN title SET NOT NULL;", "set-not-null"),
    ("ALTER TABLE events ADD COLUMN venue text NOT NULL;", "add-column-not-null"),
    ("CREATE INDEX events_title ON events (title);", "create-index"),
    ("CREATE UNIQUE INDEX events_title ON public.events (title);", "create-index"),
    ("DROP INDEX events_title;", "drop-index"),
    ("ALTER TABLE events ADD CONSTRAINT positive CHECK (price > 0);", "constraint-not-valid"),
    (
        "ALTER TABLE events ADD CONSTRAINT fk FOREIGN KEY (venue_id) REFERENCES venues (id);",
        "constraint-not-valid",
    ),
    ("ALTER TABLE events ADD CONSTRAINT u UNIQUE (title);", "add-unique-constraint"),
    (
        "ALTER TABLE events ADD COLUMN search tsvector "
        "GENERATED ALWAYS AS (to_tsvector('simple', title)) STORED;",
        "table-rewrite",
    ),
    ("ALTER TABLE events ADD COLUMN token uuid DEFAULT gen_random_uuid();", "table-rewrite"),
    ("ALTER TABLE events ADD COLUMN seq bigserial;", "table-rewrite"),
    ("VACUUM FULL events;", "table-rewrite"),
    ("BEGIN;\nALTER TABLE events ADD COLUMN a int;\nCOMMIT;", "transaction-control"),
    (
        "ALTER TABLE events ADD COLUMN a int;\nCREATE INDEX CONCURRENTLY e_a ON events (a);",
        "concurrent-index-not-alone",
    ),
    # a column named "type" is a name, not ALTER … TYPE
    ("ALTER TABLE events ALTER COLUMN type SET NOT NULL;", "set-not-null"),
    ("VACUUM (VERBOSE, FULL) events;", "table-rewrite"),
    # constraints written on an added column are checked or indexed under its exclusive lock
    ("ALTER TABLE events ADD COLUMN code text UNIQUE;", "add-column-unique"),
    ("ALTER TABLE events ADD COLUMN IF NOT EXISTS code text UNIQUE;", "add-column-unique"),
    ("ALTER TABLE events ADD COLUMN code text PRIMARY KEY;", "add-column-unique"),
    # Togather's 000026 and 000028: the referenced table is locked against writes
    (
        "ALTER TABLE events ADD COLUMN venue_id int REFERENCES venues (id);",
        "add-column-foreign-key",
    ),
    (
        "ALTER TABLE places ADD COLUMN merged_into_id UUID REFERENCES places(id) ON DELETE SET NULL;",
        "add-column-foreign-key",
    ),
    (
        "ALTER TABLE events ADD COLUMN kind text DEFAULT '' CHECK (kind IN ('', 'talk'));",
        "constraint-not-valid",
    ),
    (
        "ALTER TABLE events ADD COLUMN venue_id int DEFAULT 0 REFERENCES venues (id);",
        "add-column-foreign-key",
    ),
    ("ALTER TABLE events ADD COLUMN n bigint GENERATED ALWAYS AS IDENTITY;", "table-rewrite"),
    ("ALTER TABLE events ADD COLUMN venue text DEFAULT NULL NOT NULL;", "add-column-not-null"),
    ("ALTER TABLE events ADD CONSTRAINT title_not_null NOT NULL title;", "set-not-null"),
    ("ALTER TABLE events DROP COLUMN;", "syntax-error"),
]

SAFE = [
    "ALTER TABLE events ADD COLUMN venue text;",
    "ALTER TABLE events ADD COLUMN venue text NOT NULL DEFAULT '';",
    "ALTER TABLE events ADD COLUMN seen_at timestamptz DEFAULT now();",
    "CREATE INDEX CONCURRENTLY events_title ON events (title);",
    "DROP INDEX CONCURRENTLY IF EXISTS events_title;",
    "ALTER TABLE events ADD CONSTRAINT positive CHECK (price > 0) NOT VALID;",
    "ALTER TABLE events VALIDATE CONSTRAINT positive;",
    "ALTER TABLE events DROP CONSTRAINT positive;",
    "ALTER TABLE events ADD CONSTRAINT u UNIQUE USING INDEX events_title_key;",
    # a table created in the same migration holds no data and no running version uses it
    "CREATE TABLE venues (id int PRIMARY KEY, name text NOT NULL);\n"
    "CREATE INDEX venues_name ON venues (name);\n"
    "ALTER TABLE venues ADD COLUMN city text NOT NULL;",
    # text in comments, strings and function bodies is not SQL that runs here
    "-- DROP TABLE events;\n/* ALTER TABLE events DROP COLUMN title; /* nested */ */\nSELECT 1;",
    "INSERT INTO notes (body) VALUES ('DROP TABLE events; ALTER TABLE events DROP COLUMN x');",
    "INSERT INTO notes (body) VALUES (E'it''s \\' DROP TABLE events;');",
    "CREATE FUNCTION purge() RETURNS trigger AS $$\nBEGIN\n  DROP TABLE scratch;\n"
    "  ALTER TABLE events DROP COLUMN x;\n  RETURN NULL;\nEND\n$$ LANGUAGE plpgsql;",
    "DO $body$ BEGIN EXECUTE 'CREATE INDEX i ON events (title)'; END $body$;",
    "CREATE EXTENSION IF NOT EXISTS vector;",
    "ALTER TABLE events ALTER COLUMN type SET DEFAULT 'talk';",
    # the semicolons and END of a SQL-standard function body belong to the function
    "CREATE FUNCTION one() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END;",
    # the safe ways to the same column
    "ALTER TABLE events ADD CONSTRAINT venue_fk FOREIGN KEY (venue_id) REFERENCES venues (id) NOT VALID;",
    "ALTER TABLE events VALIDATE CONSTRAINT venue_fk;",
    "CREATE UNIQUE INDEX CONCURRENTLY events_code ON events (code);",
    "ALTER TABLE events ADD CONSTRAINT events_code_key UNIQUE USING INDEX events_code;",
    # a VIRTUAL generated column (PostgreSQL 18) is computed when read: no rewrite
    "ALTER TABLE events ADD COLUMN total int GENERATED ALWAYS AS (price * seats) VIRTUAL;",
    "ALTER TABLE events ADD CONSTRAINT title_not_null NOT NULL title NOT VALID;",
]


@pytest.mark.parametrize(("sql", "rule"), UNSAFE)
def test_unsafe_statements_are_reported_with_a_safe_alternative(sql: str, rule: str) -> None:
    findings = lint_sql(sql, "000009_change.up.sql")
    assert {f.rule for f in findings} == {rule}
    assert findings[0].safe
    assert str(findings[0]).startswith("000009_change.up.sql:")


def test_constraints_on_an_added_column_name_the_safe_sequence() -> None:
    unique = lint_sql("ALTER TABLE events ADD COLUMN code text UNIQUE;")[0]
    assert "CREATE UNIQUE INDEX CONCURRENTLY" in unique.safe
    assert "UNIQUE USING INDEX" in unique.safe
    assert "add the column without UNIQUE" in unique.safe
    foreign = lint_sql("ALTER TABLE e ADD COLUMN v int REFERENCES venues (id);")[0]
    assert "add the column without REFERENCES" in foreign.safe
    assert "NOT VALID" in foreign.safe and "VALIDATE CONSTRAINT" in foreign.safe
    assert "referenced table" in foreign.message
    with_default = lint_sql("ALTER TABLE e ADD COLUMN v int DEFAULT 1 REFERENCES venues (id);")[0]
    assert "every row" in with_default.message


@pytest.mark.parametrize("sql", SAFE)
def test_safe_statements_are_not_reported(sql: str) -> None:
    assert lint_sql(sql) == []


def test_findings_point_at_the_line_of_the_clause_in_multi_line_statements() -> None:
    sql = (
        "-- header\n"
        "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\n"
        "ALTER TABLE events\n"
        "    ADD COLUMN a int,\n"
        "    DROP COLUMN b,\n"
        "    ALTER COLUMN c SET NOT NULL;\n"
    )
    found = [(f.line, f.rule) for f in lint_sql(sql, "f.sql")]
    assert found == [(5, "drop-column"), (6, "set-not-null")]


def test_a_statement_the_parser_rejects_is_reported_and_the_others_still_checked() -> None:
    sql = (
        "UPDATE events SET title = 'x';\n"
        "SELEC 1;\n"
        "ALTER TABLE events DROP COLUMN x;\n"
        "INSERT INTO notes VALUES ('oops);\n"
    )
    findings = lint_sql(sql)
    assert [(f.line, f.rule) for f in findings] == [
        (2, "syntax-error"),
        (3, "drop-column"),
        (4, "syntax-error"),
    ]
    assert 'syntax error at or near "SELEC"' in findings[0].message
    assert "unterminated quoted string" in findings[2].message


def test_a_character_the_scanner_has_no_name_for_is_a_syntax_error() -> None:
    findings = lint_sql("SELECT {1};\nDROP TABLE legacy;\n")
    assert [(f.line, f.rule) for f in findings] == [(1, "syntax-error"), (2, "drop-table")]


def test_lines_are_found_by_characters_in_text_that_is_not_ascii() -> None:
    # the parser counts bytes of UTF-8: 20 two-byte letters would move "DROP b" to line 3
    sql = 'ALTER TABLE t ADD COLUMN "' + "é" * 20 + '" int,\nDROP b,\nDROP c;\nSELEC 1;\n'
    assert [(f.line, f.rule) for f in lint_sql(sql)] == [
        (2, "drop-column"),
        (3, "drop-column"),
        (4, "syntax-error"),
    ]
    assert statement_at_line(sql, 4) == "SELEC 1"


def test_tables_created_by_earlier_pending_files_count_as_new(tmp_path: Path) -> None:
    first = tmp_path / "000003_venues.up.sql"
    first.write_text("CREATE TABLE venues (id int);\n")
    second = tmp_path / "000004_venues_index.up.sql"
    second.write_text("CREATE INDEX venues_id ON venues (id);\nCREATE INDEX e ON events (id);\n")
    findings = lint_files([first, second])
    assert [(Path(f.file).name, f.line, f.rule) for f in findings] == [
        ("000004_venues_index.up.sql", 2, "create-index")
    ]


def test_tables_created_by_earlier_pending_files_may_be_renamed_and_dropped(
    tmp_path: Path,
) -> None:
    first = tmp_path / "000003_scratch.up.sql"
    first.write_text("CREATE TABLE scratch (id int);\n")
    second = tmp_path / "000004_staging.up.sql"
    second.write_text(
        "ALTER TABLE scratch RENAME TO staging;\n"
        "CREATE INDEX staging_id ON staging (id);\n"
        "DROP TABLE public.staging;\n"
        "DROP TABLE legacy;\n"
    )
    findings = lint_files([first, second])
    assert [(Path(f.file).name, f.line, f.rule) for f in findings] == [
        ("000004_staging.up.sql", 4, "drop-table")
    ]


def test_masking_keeps_offsets_and_newlines() -> None:
    sql = "SELECT 'a;b' -- c;\n, $x$ d; $x$;"
    masked = mask_sql(sql)
    assert len(masked) == len(sql)
    assert masked.count("\n") == sql.count("\n")
    assert masked.count(";") == 1


def test_statement_at_line_returns_the_whole_statement() -> None:
    sql = "ALTER TABLE a ADD COLUMN b int;\nUPDATE a\nSET b = nope;\n"
    assert statement_at_line(sql, 3) == "UPDATE a\nSET b = nope"
    assert statement_at_line(sql, 1) == "ALTER TABLE a ADD COLUMN b int"


@pytest.mark.parametrize(
    ("sql", "one_transaction"),
    [
        ("ALTER TABLE a ADD COLUMN b int;\nINSERT INTO a VALUES (1);", True),
        ("CREATE FUNCTION f() AS $$ BEGIN COMMIT; END $$;", True),
        ("CREATE INDEX CONCURRENTLY i ON a (b);", False),
        ("BEGIN; SELECT 1; COMMIT;", False),
        # judged by the kind of statement, not by the words in it
        (
            "CREATE FUNCTION one() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END;\n"
            "SELECT one();",
            True,
        ),
        ("REFRESH MATERIALIZED VIEW CONCURRENTLY totals;\nSELECT 1;", True),
        ("REINDEX INDEX CONCURRENTLY events_title;", False),
        ("VACUUM events;", False),
    ],
)
def test_files_that_run_in_one_transaction(sql: str, one_transaction: bool) -> None:
    assert runs_in_one_transaction(sql) == one_transaction


def test_statement_at_line_in_a_file_the_parser_rejects() -> None:
    typo = "ALTER TABLE a ADD COLUMN b int;\nUPDAT a\nSET b = 1;\n"
    assert statement_at_line(typo, 3) == "UPDAT a\nSET b = 1"
    unterminated = "ALTER TABLE a ADD COLUMN b int;\nUPDATE a\nSET b = 'oops;\n"
    assert statement_at_line(unterminated, 1) == "ALTER TABLE a ADD COLUMN b int"
    assert statement_at_line(unterminated, 3) == "UPDATE a\nSET b = 'oops;"


def test_a_migrations_directory_that_does_not_exist_is_an_error_not_no_migrations(
    tmp_path: Path,
) -> None:
    with pytest.raises(MigrationError, match="does not exist"):
        local_migration_files(tmp_path / "migrations")
    with pytest.raises(MigrationError, match="does not exist"):
        lint_directory(tmp_path / "migrations")
    (tmp_path / "migrations").mkdir()
    assert local_migration_files(tmp_path / "migrations") == {}


def test_pending_migrations_are_linted_as_a_deploy_lints_them(tmp_path: Path) -> None:
    """What is pending is what a CI gate lints: files newer than the applied version, where a
    table created by a pending file is new; the history (``--all``) lints each file alone."""
    directory = tmp_path / "migrations"
    directory.mkdir()
    (directory / "000001_venues.up.sql").write_text("CREATE TABLE venues (id int PRIMARY KEY);\n")
    (directory / "000002_code.up.sql").write_text(
        "ALTER TABLE venues ADD COLUMN code text UNIQUE;\n"
    )
    (directory / "000003_events.up.sql").write_text("CREATE TABLE events (id int);\n")

    fresh = lint_migrations(directory, applied=None)
    assert fresh.files == ("000001_venues.up.sql", "000002_code.up.sql", "000003_events.up.sql")
    assert fresh.findings == ()  # venues is created by a pending migration: it holds no data
    after_one = lint_migrations(directory, applied=1)
    assert after_one.files == ("000002_code.up.sql", "000003_events.up.sql")
    assert [(Path(f.file).name, f.rule) for f in after_one.findings] == [
        ("000002_code.up.sql", "add-column-unique")
    ]
    assert lint_migrations(directory, applied=3) == LintReport(directory, (), ())
    history = lint_migrations(directory, applied=3, history=True)
    assert len(history.files) == 3
    assert [f.rule for f in history.findings] == ["add-column-unique"]


def test_the_lint_command_offline_lints_what_is_newer_than_since_or_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "migrations"
    directory.mkdir()
    (directory / "000001_code.up.sql").write_text("ALTER TABLE events ADD COLUMN c text UNIQUE;")
    (directory / "000002_venues.up.sql").write_text("CREATE TABLE venues (id int);\n")

    def lint(*args: str) -> int:
        monkeypatch.setattr(sys, "argv", ["shipyard", "migrations", "lint", *args])
        with pytest.raises(SystemExit) as exited:
            cli.main()
        return int(exited.value.code or 0)

    assert lint("--path", str(directory), "--since", "1") == 0
    assert "0 finding(s) in 1 migration(s)" in capsys.readouterr().err
    assert lint("--path", str(directory), "--since", "0") == cli.ExitCode.FAILED
    assert "000001_code.up.sql:1: add-column-unique" in capsys.readouterr().out
    assert lint("--path", str(directory), "--all") == cli.ExitCode.FAILED
    assert lint("--path", str(directory), "--all", "--since", "1") == cli.ExitCode.USAGE
