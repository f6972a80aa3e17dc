"""The database in a deploy: migration planning (pending files, lint, whether to snapshot),
the snapshot before migrating, golang-migrate and the release commands."""

from __future__ import annotations

from pathlib import Path

from shipyard.config import DatabaseSection
from shipyard.database import (
    Database,
    DatabaseError,
    MigrationError,
    MigrationPlan,
    MigrationState,
    Snapshot,
    SnapshotError,
    pending_versions,
    plan_migrations,
    protected_snapshots,
)
from shipyard.errors import HostUnreachable, ShipyardError
from shipyard.providers.docker._base import StepsBase
from shipyard.providers.docker._env import (
    env_file_text,
    external_database,
    release_command_env,
)
from shipyard.state import Release


class Migrations(StepsBase):
    """The ``plan_migrations``, ``snapshot`` and ``migrate`` steps."""

    def pending_migrations(self, current: int | None) -> list[int]:
        """Migration versions in the source newer than ``current``."""
        section = self.config.database
        if section is None or section.migrations is None:
            return []
        return pending_versions(self.config.resolve(section.migrations.path), current)

    def applied_migrations(self) -> MigrationState:
        """What the environment's database has applied: nothing when shipyard never created
        it; ``DatabaseError`` when it cannot be asked (no database, stopped, or an external one
        whose client is not running yet)."""
        database = self._database()
        if database is None:
            raise DatabaseError(
                "this environment has no database, so it cannot be asked which "
                "migrations it has applied",
                hint="lint offline: `shipyard migrations lint ENV --since VERSION` (the version "
                "applied there), or `--all`",
            )
        try:
            info = self.docker.container(database.container)
        except HostUnreachable as exc:
            raise HostUnreachable(
                exc.message,
                hint=f"{exc.hint + '; ' if exc.hint else ''}or lint offline: `shipyard "
                "migrations lint ENV --since VERSION` (the version applied there), or `--all`",
            ) from exc
        if info is None and database.external is None:
            return MigrationState(None, False)
        if info is None or not info.running:
            what = f"{info.name} is {info.status}" if info else f"{database.container} is missing"
            raise DatabaseError(
                f"the external database's client container {what}: it cannot say which "
                "migrations the database has applied"
                if database.external is not None
                else f"database container {what}: it cannot say which migrations it has applied",
                hint="start it (`shipyard deploy ENV`), or lint offline: `shipyard migrations "
                "lint ENV --since VERSION`, or `--all`",
            )
        return database.migration_state()

    def plan_migrations(self) -> MigrationPlan:
        """Pending migrations, their lint findings, and whether to snapshot first. Changes nothing."""
        database = self._database()
        section = self.config.database
        if section is None or section.migrations is None:
            return MigrationPlan(None, (), snapshot_skip="no migrations configured")
        assert database is not None  # noqa: S101 — a database section gives one
        prefetched, self._prefetched = self._prefetched, None
        self._planned = prefetched if prefetched is not None else database.migration_state()
        return plan_migrations(section, self.config.resolve(section.migrations.path), self._planned)

    def snapshot(self, release: Release) -> Snapshot:
        """Snapshot before migrating, then prune old snapshots (a failed prune never fails it)."""
        store = self._snapshots()
        if store is None:
            raise SnapshotError("no database managed by shipyard to snapshot")
        snapshot = store.create(
            reason="pre-migrate",
            version=release.version,
            commit=release.commit,
            deployment_id=release.id,
        )
        try:
            pruned = store.prune(
                store.plan_prune(protected_snapshots([*self.ctx.store.releases(), release]))
            )
        except ShipyardError as exc:  # retention runs again after the next snapshot
            self._warn(f"pruning old snapshots failed: {exc.message}")
        else:
            if pruned:
                self._warn(f"pruned {len(pruned)} old snapshot(s): {', '.join(pruned)}", note=True)
        return snapshot

    def migrate(self, release: Release) -> int | None:
        database = self._database()
        section = self.config.database
        if section is None or database is None:
            return None
        planned, self._planned = self._planned, None
        version = (planned or database.migration_state()).version
        if section.migrations is not None and self.pending_migrations(version):
            source = self.config.resolve(section.migrations.path)
            version = self._apply_migrations(database, section, source, release)
        for argv in section.release_commands:
            self._write(
                self.layout.release_commands_env,
                env_file_text(release_command_env(self.config, self.names), source="app env"),
            )
            database.run_release_command(
                argv,
                image=release.image,
                network=self.names.network,
                env_file=self.layout.release_commands_env,
                timeout=section.migrations.timeout if section.migrations else 600,
            )
        return version

    def _apply_migrations(
        self, database: Database, section: DatabaseSection, source: Path, release: Release
    ) -> int | None:
        assert section.migrations is not None  # noqa: S101
        target = self.layout.migrations(release.id)
        self.host.put_tree(source, target)
        external = external_database(self.config)
        if external is not None:  # the URL's own password
            password = external[2].get("PGPASSWORD", "")
        else:
            password = self.config.secrets.get(section.password_env) or ""
        self._write(
            self.layout.migrate_env, env_file_text({"PGPASSWORD": password}, source="migrate env")
        )
        self._fence()
        database.migrate(
            migrations=target,
            source=source,
            network=self.names.network,
            env_file=self.layout.migrate_env,
            timeout=section.migrations.timeout,
            image=section.migrations.image,
            name=self.names.migrate(self.ctx.deployment_id),
            labels=self.names.labels(role="migrate", deployment=self.ctx.deployment_id),
            snapshot=release.snapshot,
        )
        after = database.migration_state()
        if after.dirty:
            raise MigrationError(
                f"the schema is dirty at version {after.version} after migrating",
                hint=f"see `shipyard snapshot list ENV`; snapshot {release.snapshot or '(none)'} was taken before",
            )
        return after.version

    def schema_version(self) -> int | None:
        database = self._database()
        return database.migration_state().version if database is not None else None
