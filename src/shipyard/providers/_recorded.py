"""The schema as a cloud provider knows it: from the state, since its database is out of this
machine's reach (inside a VPC, behind a connector). The version the live release recorded is
where a deploy starts; golang-migrate itself applies only what the database lacks."""

from __future__ import annotations

from shipyard.config import Config
from shipyard.database import MigrationPlan, MigrationState, plan_migrations
from shipyard.state import StateStore


def recorded_version(store: StateStore) -> int | None:
    """The schema version the live release recorded (``None``: none is live, or it recorded
    none)."""
    current = store.current()
    live = store.release(current.release_id) if current else None
    return live.migration_version if live else None


def plan_from_record(
    config: Config, store: StateStore, *, own_database: str | None
) -> MigrationPlan:
    """The migrations pending after the recorded version; the snapshot before them is skipped
    unless the database is the environment's own (``own_database``: how the provider names
    it, ``None`` when the env file's DATABASE_URL names another)."""
    section = config.database
    if section is None or section.migrations is None:
        return MigrationPlan(None, (), snapshot_skip="no migrations configured")
    state = MigrationState(recorded_version(store), False)
    plan = plan_migrations(section, config.resolve(section.migrations.path), state)
    if plan.snapshot and own_database is None:
        return MigrationPlan(
            plan.current, plan.pending, plan.findings,
            snapshot_skip="the database is not this environment's own instance: no snapshot",
        )  # fmt: skip
    return plan
