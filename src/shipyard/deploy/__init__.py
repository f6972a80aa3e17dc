"""The deploy pipeline: the only part that knows the order of phases.

validate → lock → version → build → deliver → infrastructure → plan → snapshot (only when migrations
are pending) → migrate → start → health → switch → verify → retire → record → unlock. Before the switch a failure removes the candidate and the live
slot never stops serving; from the switch on (the point of no return) a failure switches back to
the previous slot first. A provider supplies the steps (``DeploySteps``).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol

from shipyard.build import Image, VersionInfo, build_image, read_version
from shipyard.config import Config
from shipyard.database import MigrationPlan, Snapshot
from shipyard.deploy._phases import Interrupted, Phases, signals_raise
from shipyard.errors import DeployFailed, HostUnreachable, LockHeld, RollbackFailed, ShipyardError
from shipyard.events import Bus
from shipyard.hosts import Host
from shipyard.state import Current, HistoryEntry, Release, StateStore, deployer, now_iso, other_slot

__all__ = [
    "DeployOptions",
    "DeployResult",
    "DeploySteps",
    "Interrupted",
    "OperationContext",
    "Phases",
    "new_deployment_id",
    "run_deploy",
]


def new_deployment_id(now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class OperationContext:
    """Everything one operation needs, passed down (no module-level state)."""

    config: Config
    local: Host  # the operator's machine (builds run here)
    store: StateStore
    bus: Bus
    deployment_id: str

    def phases(self) -> Phases:
        return Phases(
            bus=self.bus,
            deployment_id=self.deployment_id,
            app=self.config.app.name,
            environment=self.config.environment.name,
        )


@dataclass(frozen=True)
class DeployOptions:
    allow_dirty: bool = False
    rebuild: bool = False


@dataclass(frozen=True)
class DeployResult:
    deployment_id: str
    release: Release
    url: str
    duration_s: float


class DeploySteps(Protocol):
    """What a provider does at each phase."""

    def preflight(self) -> str: ...

    def deliver(self, image: Image) -> str: ...

    def ensure_infrastructure(self) -> str: ...

    def plan_migrations(self) -> MigrationPlan: ...

    def snapshot(self, release: Release) -> Snapshot: ...

    def migrate(self, release: Release) -> int | None: ...

    def start_slot(self, slot: str, release: Release) -> str: ...

    def remove_slot(self, slot: str) -> None: ...

    def gate(self, slot: str) -> str: ...

    def switch(self, slot: str) -> str: ...

    def verify(self, release: Release) -> str: ...

    def retire(self, slot: str) -> str: ...

    def prune(self, dropped: list[Release], kept: list[Release]) -> None: ...

    def url(self) -> str: ...


def run_deploy(  # noqa: PLR0915 — the pipeline reads as one linear list of phases
    ctx: OperationContext, steps: DeploySteps, options: DeployOptions
) -> DeployResult:
    """Deploy the app's current source to the environment, or leave the previous version serving."""
    config = ctx.config
    phases = ctx.phases()
    started_at, started = now_iso(), time.monotonic()
    lock = ctx.store.lock(ctx.deployment_id, "deploy")
    allow_dirty = options.allow_dirty or config.deploy.allow_dirty
    slot = "?"
    version: VersionInfo | None = None
    release: Release | None = None
    phases.event(
        "deploy.started", message=f"deploying {config.app.name} to {config.environment.name}"
    )
    with signals_raise():
        try:
            phases.run("validate", steps.preflight, summary=str)
            phases.run("lock", lock.acquire, summary=lambda _: f"held as {ctx.deployment_id}")
            source = config.resolve(config.build.context)
            version = phases.run(
                "version",
                lambda: read_version(ctx.local, source, allow_dirty=allow_dirty),
                summary=lambda v: f"{v.version} ({v.short})",
            )
            phases.version, phases.commit = version.version, version.commit
            image = phases.run(
                "build",
                lambda: build_image(config, ctx.local, version, rebuild=options.rebuild),
                summary=lambda i: f"{i.tag} (built before)" if i.reused else i.tag,
            )
            phases.run("deliver", lambda: steps.deliver(image), summary=str)
            phases.run("infrastructure", steps.ensure_infrastructure, summary=str)
            current = ctx.store.current()
            previous = current.slot if current else None
            slot = other_slot(previous)
            release = Release(
                id=ctx.deployment_id,
                version=version.version,
                commit=version.commit,
                image=image.tag,
                image_id=image.id,
                slot=slot,
                migration_version=None,
                created_at=now_iso(),
                deployed_by=deployer(),
            )
            plan = phases.run("plan", steps.plan_migrations, summary=lambda p: p.summary())
            for finding in plan.findings:
                phases.warn(f"migration lint: {finding}")
            if plan.snapshot:
                before = release
                snapshot = phases.run(
                    "snapshot",
                    lambda: steps.snapshot(before),
                    summary=lambda s: (
                        f"{s.name} ({s.size} bytes, sha256 {s.sha256[:12]}, verified)"
                    ),
                )
                phases.event(
                    "snapshot.created",
                    message=f"snapshot {snapshot.name} before migrating",
                    data={
                        "snapshot": snapshot.name,
                        "size": snapshot.size,
                        "sha256": snapshot.sha256,
                    },
                )
                release = replace(release, snapshot=snapshot.name)
            else:
                phases.skip("snapshot", plan.snapshot_skip)
            planned = release
            migrated = phases.run(
                "migrate",
                lambda: steps.migrate(planned),
                summary=lambda v: f"schema at version {v}" if v is not None else "no migrations",
            )
            release = replace(release, migration_version=migrated)
            candidate = release
            phases.on_failure(f"remove candidate slot {slot}", lambda: steps.remove_slot(slot))
            phases.run("start", lambda: steps.start_slot(slot, candidate), summary=str)
            phases.run("health", lambda: steps.gate(slot), summary=str)
            if previous is not None:
                prior = previous
                phases.on_failure(f"switch back to {prior}", lambda: _discard(steps.switch(prior)))
            phases.run("switch", lambda: steps.switch(slot), summary=str)
            phases.run("verify", lambda: steps.verify(candidate), summary=str)
            phases.clear_cleanups()  # the new version serves: nothing to undo from here
            if previous is not None and previous != slot:
                phases.run("retire", lambda: steps.retire(prior), summary=str)
            phases.run("record", lambda: _record(ctx, steps, candidate), summary=str)
        except (LockHeld, HostUnreachable):
            phases.run_cleanups()
            raise
        except ShipyardError as exc:
            failure = (
                exc
                if isinstance(exc, DeployFailed)
                else DeployFailed("deploy", exc.message, hint=exc.hint)
            )
            cleanup_failures = phases.run_cleanups()
            _record_failure(ctx, phases, failure, version, slot, started_at, started)
            phases.event("deploy.failed", error=failure.message, phase=failure.phase)
            if cleanup_failures:
                raise RollbackFailed(
                    f"{failure.message}; restoring the previous state also failed: "
                    + "; ".join(cleanup_failures),
                    hint="check `shipyard status` and the containers with `docker ps -a`",
                ) from exc
            raise failure from exc
        finally:
            lock.release()
    assert release is not None  # noqa: S101 — set on the success path
    duration = time.monotonic() - started
    ctx.store.append_history(
        HistoryEntry(
            deployment_id=ctx.deployment_id,
            action="deploy",
            result="succeeded",
            version=release.version,
            commit=release.commit,
            slot=release.slot,
            started_at=started_at,
            duration_s=round(duration, 3),
            by=release.deployed_by,
            release_id=release.id,
            steps=list(phases.completed),
        )
    )
    url = steps.url()
    phases.event(
        "deploy.completed",
        message=f"{release.version} serving at {url}",
        duration_s=round(duration, 3),
    )
    return DeployResult(
        deployment_id=ctx.deployment_id, release=release, url=url, duration_s=duration
    )


def _record(ctx: OperationContext, steps: DeploySteps, release: Release) -> str:
    store = ctx.store
    releases = [r for r in store.releases() if r.id != release.id] + [release]
    keep = ctx.config.deploy.keep_releases
    dropped, kept = releases[:-keep] if len(releases) > keep else [], releases[-keep:]
    store.save_releases(kept)
    store.set_current(Current(slot=release.slot, release_id=release.id, switched_at=now_iso()))
    if dropped:
        steps.prune(dropped, kept)
    return f"{release.version} live in {release.slot}; {len(kept)} release(s) kept"


def _record_failure(
    ctx: OperationContext,
    phases: Phases,
    failure: DeployFailed,
    version: VersionInfo | None,
    slot: str,
    started_at: str,
    started: float,
) -> None:
    try:
        ctx.store.append_history(
            HistoryEntry(
                deployment_id=ctx.deployment_id,
                action="deploy",
                result="rolled_back" if "switch" in phases.completed else "failed",
                version=version.version if version else "?",
                commit=version.commit if version else "?",
                slot=slot,
                started_at=started_at,
                duration_s=round(time.monotonic() - started, 3),
                by=deployer(),
                phase=failure.phase,
                error=ctx.config.masker(failure.message),
                steps=list(phases.completed),
            )
        )
    except ShipyardError as exc:
        phases.warn(f"could not record the failure in history: {exc.message}")


def _discard(_value: object) -> None:
    """Adapts a step that returns a summary to a cleanup callback."""
