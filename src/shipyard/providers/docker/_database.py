"""Snapshot commands on a Docker host: create, list, verify (and restore-test), restore, prune.

Restore is the one that touches the running app: under the environment's lock it takes a
``pre-restore`` snapshot, stops the app slots that write, restores in one transaction, starts the
slots again and runs the health gate on the live one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from shipyard.database import (
    RestoreTest,
    RetentionPlan,
    Snapshot,
    SnapshotError,
    SnapshotStore,
    protected_snapshots,
)
from shipyard.errors import ShipyardError
from shipyard.monitoring import republish_deployment_metrics
from shipyard.providers.docker._steps import DockerSteps
from shipyard.state import HistoryEntry, deployer, now_iso


@dataclass(frozen=True)
class RestoreResult:
    restored: Snapshot
    safety: Snapshot  # taken just before restoring
    restarted: list[str]
    health: str


@dataclass(frozen=True)
class PruneResult:
    plan: RetentionPlan
    deleted: list[str]


class DatabaseOperations:
    """One environment's snapshots, through the same steps a deploy uses."""

    def __init__(self, steps: DockerSteps) -> None:
        self.steps = steps
        self.ctx = steps.ctx
        store = steps._snapshots()
        if store is None:
            raise SnapshotError(
                "this environment has no database, so nothing to snapshot",
                hint="snapshots need `database:` in shipyard.yml",
            )
        self.store: SnapshotStore = store

    def _running(self) -> None:
        container = self.store.container  # the database's, or an external one's client
        info = self.steps.docker.container(container)
        if info is None or not info.running:
            raise SnapshotError(
                f"database container {container} is not running",
                hint="deploy the environment first (`shipyard deploy ENV`)",
            )

    def create(self, *, reason: str = "manual") -> Snapshot:
        """A snapshot now, under the environment's lock (never beside a deploy's migration)."""
        with self.ctx.store.lock(
            self.ctx.deployment_id, "snapshot", ttl=self.ctx.config.deploy.lock_ttl
        ):
            snapshot = self._create(reason=reason)
        self._publish()
        return snapshot

    def _publish(self) -> None:
        """The deployment metrics name the newest snapshot (SnapshotTooOld reads it)."""
        republish_deployment_metrics(
            self.ctx.config, self.ctx.store, self.steps.newest_snapshot, self.ctx.phases().warn
        )

    def _create(self, *, reason: str) -> Snapshot:
        self._running()
        current = self.ctx.store.current()
        release = self.ctx.store.release(current.release_id) if current else None
        return self.store.create(
            reason=reason,
            version=release.version if release else "unknown",
            commit=release.commit if release else "unknown",
            deployment_id=self.ctx.deployment_id,
        )

    def snapshots(self) -> list[Snapshot]:
        return self.store.snapshots()

    def _pick(self, name: str | None) -> Snapshot:
        if name:
            return self.store.get(name)
        snapshots = self.store.snapshots()
        if not snapshots:
            raise SnapshotError(f"no snapshots in {self.store.directory}")
        return snapshots[0]

    def verify(
        self, name: str | None, *, restore_test: bool
    ) -> tuple[Snapshot, RestoreTest | None]:
        snapshot = self._pick(name)
        if not restore_test:
            return self.store.verify(snapshot), None
        self._running()
        section = self.steps.config.database
        extensions = section.extensions if section else []
        result = self.store.restore_test(snapshot, extensions)
        if not result.ok:
            wrong = ", ".join(
                f"{table}: {dumped} in the dump, {restored} restored"
                for table, (dumped, restored) in result.tables.items()
                if dumped != restored
            )
            raise SnapshotError(f"restore test of {snapshot.name} lost rows: {wrong}")
        return snapshot, result

    def restore(self, name: str) -> RestoreResult:
        snapshot = self.store.get(name)
        self._running()
        with self.ctx.store.lock(
            self.ctx.deployment_id, "restore", ttl=self.ctx.config.deploy.lock_ttl
        ):
            started_at, started = now_iso(), time.monotonic()
            try:
                self.store.verify(snapshot)
                safety = self._create(reason=f"pre-restore of {snapshot.name}")
                stopped = self._stop_slots()
                try:
                    self.store.restore(snapshot)
                finally:
                    for container in stopped:
                        self.steps.docker.start(container)
                health = self._gate()
            except ShipyardError as exc:
                self._history(snapshot, started_at, started, error=exc.message)
                raise
            self._history(snapshot, started_at, started, error=None)
        return RestoreResult(snapshot, safety, stopped, health)

    def _history(
        self, snapshot: Snapshot, started_at: str, started: float, *, error: str | None
    ) -> None:
        current = self.ctx.store.current()
        self.ctx.store.append_history(
            HistoryEntry(
                deployment_id=self.ctx.deployment_id,
                action="restore",
                result="failed" if error else "succeeded",
                version=snapshot.version,
                commit=snapshot.commit,
                slot=current.slot if current else "-",
                started_at=started_at,
                duration_s=round(time.monotonic() - started, 3),
                by=deployer(),
                error=self.steps.config.masker(error) if error else None,
                steps=[f"restored {snapshot.name}"] if not error else [],
            )
        )

    def _stop_slots(self) -> list[str]:
        stopped = []
        for slot in ("blue", "green"):
            container = self.steps.names.slot(slot)
            info = self.steps.docker.container(container)
            if info is not None and info.running:
                self.steps.docker.stop(container, timeout=self.steps.config.app.stop_grace_period)
                stopped.append(container)
        return stopped

    def _gate(self) -> str:
        current = self.ctx.store.current()
        if current is None:
            return "no live slot to check"
        try:
            return self.steps.gate(current.slot)
        except ShipyardError as exc:
            raise SnapshotError(
                f"the database was restored but slot {current.slot} is not healthy: {exc.message}",
                hint="the pre-restore snapshot holds the data from just before; restore it, or deploy a version that matches the restored schema",
            ) from exc

    def prune(self, *, dry_run: bool) -> PruneResult:
        releases = self.ctx.store.releases()
        plan = self.store.plan_prune(protected_snapshots(releases))
        if dry_run:
            return PruneResult(plan, [])
        with self.ctx.store.lock(
            self.ctx.deployment_id, "prune", ttl=self.ctx.config.deploy.lock_ttl
        ):
            result = PruneResult(plan, self.store.prune(plan))
        self._publish()
        return result
