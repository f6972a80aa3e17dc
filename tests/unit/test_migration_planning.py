"""Migration planning, for every provider: pending files, lint, the snapshot decision, a dirty
schema's recovery steps and the snapshots retention keeps (``shipyard.database``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.config import DatabaseSection
from shipyard.database import (
    MigrationError,
    MigrationLintFailed,
    MigrationState,
    pending_versions,
    plan_migrations,
    protected_snapshots,
)
from shipyard.state import Release


def _section(lint: str = "warn", snapshots: bool = True) -> DatabaseSection:
    return DatabaseSection.model_validate(
        {
            "name": "shop",
            "user": "shop",
            "migrations": {"path": "migrations", "lint": lint},
            "snapshots": {"enabled": snapshots},
        }
    )


@pytest.fixture
def migrations(tmp_path: Path) -> Path:
    directory = tmp_path / "migrations"
    directory.mkdir()
    (directory / "000001_create_events.up.sql").write_text("CREATE TABLE events (id int);\n")
    (directory / "000002_create_jobs.up.sql").write_text("CREATE TABLE jobs (id int);\n")
    (directory / "000002_create_jobs.down.sql").write_text("DROP TABLE jobs;\n")
    (directory / "README.md").write_text("not a migration\n")
    return directory


def test_pending_migrations_are_those_newer_than_the_schema(migrations: Path) -> None:
    assert pending_versions(migrations, None) == [1, 2]
    assert pending_versions(migrations, 1) == [2]
    plan = plan_migrations(_section(), migrations, MigrationState(1, dirty=False))
    assert plan.pending == ("000002_create_jobs.up.sql",)
    assert plan.current == 1
    assert plan.snapshot and plan.snapshot_skip == ""
    assert plan.summary() == "schema at version 1; pending: 000002_create_jobs.up.sql"


def test_nothing_pending_or_snapshots_off_says_why_no_snapshot(migrations: Path) -> None:
    done = plan_migrations(_section(), migrations, MigrationState(2, dirty=False))
    assert (done.pending, done.snapshot, done.snapshot_skip) == ((), False, "no pending migrations")
    off = plan_migrations(_section(snapshots=False), migrations, MigrationState(None, False))
    assert not off.snapshot
    assert off.snapshot_skip == "database.snapshots.enabled is false"


def test_a_dirty_schema_is_refused_with_steps_for_either_outcome(migrations: Path) -> None:
    with pytest.raises(MigrationError) as caught:
        plan_migrations(_section(), migrations, MigrationState(2, dirty=True))
    assert "dirty at version 2 (000002_create_jobs.up.sql)" in caught.value.message
    hint = caught.value.hint or ""
    assert "`migrate force 2` if you completed it" in hint
    assert "`migrate force 1` if you undid it" in hint
    assert "shipyard snapshot list ENV" in hint


def test_unsafe_pending_sql_blocks_only_when_lint_blocks(migrations: Path) -> None:
    (migrations / "000003_index.up.sql").write_text("CREATE INDEX events_id ON events (id);\n")
    warned = plan_migrations(_section("warn"), migrations, MigrationState(2, False))
    assert warned.pending == ("000003_index.up.sql",) and warned.findings
    assert not plan_migrations(_section("off"), migrations, MigrationState(2, False)).findings
    with pytest.raises(MigrationLintFailed, match="unsafe statement"):
        plan_migrations(_section("block"), migrations, MigrationState(2, False))


def test_a_missing_migrations_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="does not exist"):
        plan_migrations(_section(), tmp_path / "nowhere", MigrationState(None, False))


def test_retention_keeps_the_snapshots_of_retained_releases() -> None:
    def release(rid: str, snapshot: str | None) -> Release:
        return Release(rid, "1.0", "c" * 40, "shop:1", "sha256:1", "blue", 1, "t", "me", snapshot)

    kept = protected_snapshots([release("r1", "snap-a"), release("r2", None)])
    assert kept == {"snap-a", "r1", "r2"}
