"""The deploy pipeline: the only part that knows the order of phases, declared once for each
operation in ``deploy._pipeline`` (``DEPLOY``, ``ROLLBACK``, ``ROTATE_PASSWORD``, ``REPAIR``).

validate → lock → repair → version → build → deliver → infrastructure → plan → snapshot (only when
migrations are pending) → [maintenance_on] → migrate → start → health → switch → verify →
[maintenance_off] → watch → retire → record → unlock (the maintenance phases with
``deploy --maintenance``, see ``_maintenance``). ``validate`` runs every check `shipyard check` runs (``run_checks``) and refuses before
anything changes. Before the switch a failure removes the candidate and the live slot never stops
serving; from the switch on (the point of no return) a failure switches back to the previous slot
first.
From the moment it holds the lock, the operation journals its intent on the host before each step
that changes what serves, so an operation killed at any point is finished or undone by the next
one (``repair``, ``_repair``). Every phase and cleanup is fenced by the lock. A provider supplies
the steps: one small protocol per capability (``deploy._steps``), ``DeploySteps`` all of them.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import NoReturn

from shipyard.build import build_image, read_version
from shipyard.config import Config
from shipyard.database import PasswordRotation
from shipyard.deploy._checks import Checked, check_file, env_files, run_checks
from shipyard.deploy._ci import ci_credentials, require_ci
from shipyard.deploy._hooks import HookFacts, HookPoint, Hooks, hook_env
from shipyard.deploy._maintenance import (
    MaintenanceMode,
    by_operator,
    end_maintenance,
    for_deploy,
)
from shipyard.deploy._nodes import NodeOutcome, across_nodes, rollout_error
from shipyard.deploy._phases import Phases, signals_noted, signals_raise
from shipyard.deploy._pipeline import (
    DEPLOY,
    NO_PHASES,
    PIPELINES,
    REPAIR,
    ROLLBACK,
    ROTATE_PASSWORD,
    PhaseSpec,
    Pipeline,
    PlanStep,
    Runs,
    UndeclaredPhase,
    planned,
)
from shipyard.deploy._repair import RepairSteps, repair, repair_entry
from shipyard.deploy._rollback import (
    RULE,
    RollbackChoice,
    Served,
    choose_rollback,
    common_rollback_version,
)
from shipyard.deploy._steps import (
    Candidates,
    Delivery,
    DeploySteps,
    Infrastructure,
    Observation,
    Retention,
    Rotation,
    RotationSteps,
    Schema,
    Traffic,
)
from shipyard.errors import (
    CheckFailed,
    CiNotPassed,
    DeployFailed,
    HostConflict,
    HostUnreachable,
    Interrupted,
    LockHeld,
    LockLost,
    NeedsConfirmation,
    RollbackFailed,
    ShipyardError,
    StateError,
    ToolTooOld,
)
from shipyard.events import Bus, EventKind
from shipyard.hosts import Host
from shipyard.monitoring import republish_deployment_metrics
from shipyard.state import (
    Current,
    Fence,
    HistoryEntry,
    Intent,
    Lock,
    Maintenance,
    Release,
    StateStore,
    deployer,
    now_iso,
    other_slot,
    retained,
)

__all__ = [
    "DEPLOY",
    "PIPELINES",
    "REPAIR",
    "ROLLBACK",
    "ROTATE_PASSWORD",
    "RULE",
    "Candidates",
    "Checked",
    "CiNotPassed",
    "Delivery",
    "DeployOptions",
    "DeployResult",
    "DeploySteps",
    "HookFacts",
    "HookPoint",
    "Hooks",
    "Infrastructure",
    "Interrupted",
    "MaintenanceMode",
    "NodeOutcome",
    "Observation",
    "OperationContext",
    "PhaseSpec",
    "Phases",
    "Pipeline",
    "PlanStep",
    "RepairSteps",
    "Retention",
    "RollbackChoice",
    "RollbackOptions",
    "RotateOptions",
    "Rotation",
    "RotationSteps",
    "Runs",
    "Schema",
    "Served",
    "Traffic",
    "UndeclaredPhase",
    "across_nodes",
    "by_operator",
    "check_file",
    "choose_rollback",
    "common_rollback_version",
    "env_files",
    "hook_env",
    "new_deployment_id",
    "planned",
    "rollout_error",
    "run_checks",
    "run_deploy",
    "run_maintenance",
    "run_repair",
    "run_rollback",
    "run_rotate_password",
    "validate",
    "watch_window",
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
    target: Host | None = None  # the environment's host (hooks with `where: target`)
    fence: Fence = field(default_factory=Fence)  # armed with the lock while it is held

    @property
    def node(self) -> str:
        """The host the environment runs on, as events and hooks name it."""
        target = self.config.environment.target
        if target == "local":
            return socket.gethostname()
        return target.removeprefix("ssh://").rsplit("@", 1)[-1]

    def phases(self, pipeline: Pipeline = NO_PHASES) -> Phases:
        """Phases of ``pipeline`` (without one: only events, no phase can run)."""
        return Phases(
            pipeline=pipeline,
            bus=self.bus,
            deployment_id=self.deployment_id,
            app=self.config.app.name,
            environment=self.config.environment.name,
            node=self.node,
        )

    def hooks(self) -> Hooks:
        return Hooks(self.config.hooks, self.local, self.target, self.config.root)


@dataclass(frozen=True)
class DeployOptions:
    allow_dirty: bool = False
    rebuild: bool = False
    lock_wait: float = 0.0  # seconds to wait for another operation's lock; 0: fail at once
    # Seconds the new version is watched after the switch; None: ``deploy.watch``; 0: not
    # watched (``--no-watch``).
    watch: float | None = None
    # Maintenance mode from just before the migrations until the switch is verified
    # (``deploy._maintenance``).
    maintenance: bool = False


@dataclass(frozen=True)
class RollbackOptions:
    # A version, release id or commit prefix; None: what served before the live release
    # (``choose_rollback``).
    to: str | None = None
    why: str | None = (
        None  # why ``to`` was named, when shipyard named it (``common_rollback_version``)
    )
    yes: bool = False  # accept running an older version against a newer schema
    lock_wait: float = 0.0
    watch: float | None = None  # None: ``deploy.rollback_watch``; 0: not watched (``--no-watch``)


@dataclass(frozen=True)
class RotateOptions:
    lock_wait: float = 0.0


@dataclass(frozen=True)
class DeployResult:
    deployment_id: str
    release: Release
    url: str
    duration_s: float


def validate(
    ctx: OperationContext, steps: DeploySteps, *, allow_dirty: bool | None = None
) -> Checked:
    """Every check `shipyard check` runs, before a deploy, rollback or plan changes anything
    (``CheckFailed`` listing every problem; see ``run_checks``). ``allow_dirty``: for an
    operation that builds the source (deploy, plan), whether uncommitted changes are allowed;
    ``None`` for one that builds nothing (rollback)."""
    return run_checks(
        ctx.config, steps.preflight, local=ctx.local, operation=True, allow_dirty=allow_dirty
    )


def run_deploy(ctx: OperationContext, steps: DeploySteps, options: DeployOptions) -> DeployResult:
    """Deploy the app's current source to the environment, or leave the previous version serving."""
    config = ctx.config
    allow_dirty = options.allow_dirty or config.deploy.allow_dirty

    def body(operation: _Operation) -> Release:
        phases = operation.phases
        for warning in config.warnings:
            phases.warn(f"config: {warning}")
        source = config.resolve(config.build.context)
        # Validate read the source with this same function a moment ago: that read is used.
        read = operation.checked.source if operation.checked is not None else None
        version = phases.run(
            "version",
            lambda: (
                read
                or read_version(
                    ctx.local, source, allow_dirty=allow_dirty, env_files=env_files(config)
                )
            ),
            summary=lambda v: f"{v.version} ({v.short})",
        )
        phases.version, phases.commit = version.version, version.commit
        operation.describe(version.version, version.commit)
        github = config.deploy.github
        if config.deploy.require_ci and github is not None:
            token, this_run = ci_credentials(github, config.secrets, os.environ)
            phases.run(
                "ci",
                lambda: require_ci(github, token, version.commit, this_run=this_run),
                summary=str,
            )
        operation.hook(HookPoint.BEFORE_DEPLOY)
        image = phases.run(
            "build",
            lambda: build_image(config, ctx.local, version, rebuild=options.rebuild),
            summary=lambda i: f"{i.tag} (built before)" if i.reused else i.tag,
        )
        phases.event(EventKind.DEPLOY_BUILT, message=image.tag, data={"image": image.tag})
        planned = Release(
            id=ctx.deployment_id,
            version=version.version,
            commit=version.commit,
            image=image.tag,
            image_id=image.id,
            slot="?",
            migration_version=None,
            created_at=now_iso(),
            deployed_by=deployer(),
        )
        operation.fresh_image = not image.reused
        failed = planned
        phases.on_failure(
            "forget the failed release (its env file, migration copy and new image)",
            lambda: _discard(steps.discard(failed, image=not image.reused)),
        )
        phases.run("deliver", lambda: steps.deliver(image), summary=str)
        phases.run("infrastructure", steps.ensure_infrastructure, summary=str)
        current = ctx.store.current()
        slot = other_slot(current.slot if current else None)
        operation.slot = slot
        operation.previous = current.slot if current else None
        planned = replace(planned, slot=slot)
        migrations = phases.run("plan", steps.plan_migrations, summary=lambda p: p.summary())
        operation.journal("migrate", planned)
        for finding in migrations.findings:
            phases.warn(f"migration lint: {finding}")
        if migrations.findings and not options.maintenance:
            phases.warn(
                "pending migrations cannot run online (migration lint): `shipyard deploy "
                f"{config.environment.name} --maintenance` answers every request with a "
                "maintenance page (503) while they run, instead of letting requests wait on "
                "their locks"
            )
        if migrations.snapshot:
            unsnapshotted = planned
            snapshot = phases.run(
                "snapshot",
                lambda: steps.snapshot(unsnapshotted),
                summary=lambda s: f"{s.name} ({s.size} bytes, sha256 {s.sha256[:12]}, verified)",
            )
            phases.event(
                EventKind.SNAPSHOT_CREATED,
                message=f"snapshot {snapshot.name} before migrating",
                data={"snapshot": snapshot.name, "size": snapshot.size, "sha256": snapshot.sha256},
            )
            planned = replace(planned, snapshot=snapshot.name)
        else:
            phases.skip("snapshot", migrations.snapshot_skip)
        if options.maintenance:
            operation.maintenance_on()
        migrated = phases.run(
            "migrate",
            lambda: steps.migrate(planned),
            summary=lambda v: f"schema at version {v}" if v is not None else "no migrations",
        )
        if migrated is not None:
            phases.event(
                EventKind.DEPLOY_MIGRATED,
                message=f"schema at version {migrated}",
                data={"schema_version": migrated},
            )
        release = replace(planned, migration_version=migrated)
        operation.go_live(release, current)
        return release

    return _Operation(
        ctx,
        steps,
        "deploy",
        lock_wait=options.lock_wait,
        allow_dirty=allow_dirty,
        watch=options.watch,
    ).run(body)


def run_rollback(
    ctx: OperationContext, steps: DeploySteps, options: RollbackOptions
) -> DeployResult:
    """Bring back a retained release without rebuilding: what served before the live one
    (``choose_rollback``), or ``options.to``."""

    def body(operation: _Operation) -> Release:
        phases = operation.phases
        current = ctx.store.current()
        if current is None:
            raise StateError(
                f"nothing is deployed to {ctx.config.environment.name}: nothing to roll back"
            )
        target = phases.run(
            "choose",
            lambda: _choose(ctx, steps, options, phases),
            summary=lambda r: f"{r.version} ({r.commit[:7]}, release {r.id})",
            passes=(StateError, NeedsConfirmation),  # nothing to roll back to; --yes needed
        )
        release = operation.aim(target, current)
        operation.go_live(release, current)
        return release

    return _Operation(ctx, steps, "rollback", lock_wait=options.lock_wait, watch=options.watch).run(
        body
    )


def _choose(
    ctx: OperationContext, steps: DeploySteps, options: RollbackOptions, phases: Phases
) -> Release:
    """The release a rollback brings back (``choose_rollback``), refused without ``--yes`` when
    the schema is newer than the one it shipped with."""
    choice = choose_rollback(Served.read(ctx.store), options.to, why=options.why)
    target = choice.release
    for note in choice.notes:
        phases.note(note)
    phases.note(
        f"rolling back to {target.version} ({target.commit[:7]}, release {target.id}): {choice.why}"
    )
    schema = steps.schema_version()
    if (
        schema is not None
        and target.migration_version is not None
        and schema > target.migration_version
    ):
        warning = (
            f"the database schema is at version {schema}, newer than the {target.migration_version} that "
            f"{target.version} shipped with; down-migrations are not run automatically, so the old "
            "version will run against the newer schema"
        )
        phases.warn(warning)
        if not options.yes:
            raise NeedsConfirmation(
                warning,
                hint="roll back anyway with --yes (migrations should be backward compatible), or "
                "migrate down by hand first",
            )
    return target


def run_rotate_password(
    ctx: OperationContext, steps: RotationSteps, options: RotateOptions
) -> DeployResult:
    """`shipyard db rotate-password`: give the database role the password the env file holds now
    and bring the live release back with it, blue-green (a rollback to the live release with a
    fresh database URL): start it in the other slot, health gate, switch, watch, retire.

    PostgreSQL keeps sessions logged in when a password changes, so the old slot's open
    connections keep working until it is retired; from the password change to the switch (the
    start and health gate of the new slot) only connections it opens anew are refused. A
    failure before the watch window ends switches back if needed and gives the role its previous
    password again: the previous version serves as before."""

    def body(operation: _Operation) -> Release:
        phases = operation.phases
        current = ctx.store.current()
        live = ctx.store.release(current.release_id) if current is not None else None
        if current is None or live is None:
            raise StateError(
                f"nothing is deployed to {ctx.config.environment.name}: no version to restart "
                "with a new database password",
                hint="deploy it: a first deploy creates the database with the env file's password",
            )
        release = operation.aim(live, current)
        operation.journal("begin", release)
        rotation = PasswordRotation()
        phases.on_failure(
            "give the database role its previous password back",
            lambda: _discard(steps.restore_password(rotation)),
        )
        phases.run("password", lambda: steps.rotate_password(rotation, release), summary=str)
        # The old version stays up through the watch whatever deploy.old_version says: its
        # warm connections are what a switch-back relies on, since started again it would log
        # in with the password the role no longer has.
        operation.go_live(release, current, stop_old=False)
        return release

    return _Operation(ctx, steps, "rotate-password", lock_wait=options.lock_wait).run(body)


def run_repair(ctx: OperationContext, steps: DeploySteps, *, lock_wait: float = 0.0) -> str:
    """`shipyard repair`: under the lock, finish or undo an interrupted operation and bring what
    serves and the state back in line (what every deploy and rollback does first)."""
    phases = ctx.phases(REPAIR)
    lock = ctx.store.lock(ctx.deployment_id, "repair", ttl=ctx.config.deploy.lock_ttl)
    started_at, started = now_iso(), time.monotonic()
    with signals_raise():
        phases.run(
            "lock",
            lambda: lock.acquire(wait=lock_wait),
            summary=lambda _: f"held as {ctx.deployment_id}",
        )
        try:
            ctx.fence.arm(lock)
            phases.guard = lock.ensure_held
            summary = phases.run("repair", lambda: _repair(ctx, steps, phases, lock), summary=str)
            ctx.store.append_history(
                repair_entry(ctx.deployment_id, summary, started_at, time.monotonic() - started)
            )
        finally:
            ctx.fence.disarm()
            with signals_noted():
                lock.release()
    return summary


def run_maintenance(
    ctx: OperationContext,
    steps: MaintenanceMode,
    maintenance: Maintenance | None,
    *,
    lock_wait: float = 0.0,
) -> str:
    """`shipyard maintenance on|off`: under the environment's lock, record maintenance mode on
    (``maintenance``) or off and load the proxy's config rendered from it; a ``maintenance.on``
    or ``maintenance.off`` event."""
    phases = ctx.phases()
    lock = ctx.store.lock(ctx.deployment_id, "maintenance", ttl=ctx.config.deploy.lock_ttl)
    started = time.monotonic()
    with signals_raise():
        lock.acquire(wait=lock_wait)
        try:
            ctx.fence.arm(lock)
            summary = steps.set_maintenance(maintenance)
        finally:
            ctx.fence.disarm()
            with signals_noted():
                lock.release()
    duration = round(time.monotonic() - started, 3)
    if maintenance is None:
        phases.event(
            EventKind.MAINTENANCE_OFF,
            message="maintenance mode off: requests reach the app again",
            duration_s=duration,
        )
    else:
        phases.event(
            EventKind.MAINTENANCE_ON,
            message=f"maintenance mode on: {maintenance.message}",
            duration_s=duration,
            data=maintenance.to_dict(),
        )
    return summary


def _repair(ctx: OperationContext, steps: DeploySteps, phases: Phases, lock: Lock) -> str:
    return repair(
        ctx.store,
        steps,
        deployment_id=ctx.deployment_id,
        record=lambda release: _record(ctx, steps, release),
        note=phases.note,
        took_over=lock.took_over,
    )


class _Operation:
    """One deploy, rollback or password rotation: signals, the lock, failure handling, history,
    events."""

    def __init__(
        self,
        ctx: OperationContext,
        steps: DeploySteps,
        action: str,
        *,
        lock_wait: float = 0.0,
        allow_dirty: bool | None = None,  # None: it builds nothing (see ``validate``)
        watch: float | None = None,  # None: as configured (``watch_window``)
    ) -> None:
        self.ctx = ctx
        self.watch_s, self.unwatched = watch_window(ctx.config, action, watch)
        self.steps = steps
        self.action = action
        self.lock_wait = lock_wait
        self.allow_dirty = allow_dirty
        self.checked: Checked | None = None  # what validate found
        self.phases = ctx.phases(PIPELINES[action])
        self.hooks = ctx.hooks()
        self.kinds = _KINDS[action]
        self.slot = "?"
        self.previous: str | None = None
        self.version = "?"
        self.commit = "?"
        self.fresh_image = False
        self.first_deploy = False  # nothing served when it began
        self.intent: Intent | None = None
        self.lock: Lock | None = None  # taken in ``run``
        self.started = time.monotonic()  # reset when ``run`` begins
        self.live_s: float | None = None  # seconds from the start until the new version served
        self.in_maintenance = False  # it turned maintenance mode on (``deploy --maintenance``)

    def describe(self, version: str, commit: str) -> None:
        self.version, self.commit = version, commit

    def aim(self, release: Release, current: Current) -> Release:
        """``release`` (one that served before) as this operation brings it into the slot
        beside the live one: the operation and its events name it from here on."""
        self.phases.version, self.phases.commit = release.version, release.commit
        self.describe(release.version, release.commit)
        self.slot = other_slot(current.slot)
        self.previous = current.slot
        return replace(release, slot=self.slot)

    def hook(
        self, point: HookPoint, *, error: str | None = None, failed_phase: str | None = None
    ) -> None:
        """Run the hooks of ``point``: before_* hooks stop the operation, the others only warn."""
        if not self.hooks.at(point):
            return
        facts = HookFacts(
            app=self.ctx.config.app.name,
            environment=self.ctx.config.environment.name,
            deployment_id=self.ctx.deployment_id,
            action=self.action,
            node=self.ctx.node,
            version=None if self.version == "?" else self.version,
            commit=None if self.commit == "?" else self.commit,
            slot=None if self.slot == "?" else self.slot,
            previous_slot=self.previous,
            phase=failed_phase,
            error=self.ctx.config.masker(error) if error else None,
            url=self.steps.url() if point is HookPoint.AFTER_DEPLOY else None,
        )
        run = lambda: self.hooks.run(point, facts)  # noqa: E731
        if point in (HookPoint.BEFORE_DEPLOY, HookPoint.BEFORE_SWITCH):
            self.phases.run(point.value, run, summary=str)
            return
        try:
            self.phases.run(point.value, run, summary=str)
        except DeployFailed as exc:
            self.phases.warn(
                f"{point.value} hook failed; the {self.action}'s outcome stands: {exc.message}"
            )

    def begin(self) -> None:
        """Journal that the operation holds the lock and has begun (``state.Intent``)."""
        previous = self.ctx.store.current()
        self.first_deploy = self.action == "deploy" and previous is None
        self.intent = Intent(
            deployment_id=self.ctx.deployment_id,
            action=self.action,
            release=None,
            previous=previous,
            step="begin",
            by=deployer(),
            started_at=self.phases.started_at,
            updated_at=now_iso(),
        )
        self.journal("begin")

    def journal(self, step: str, release: Release | None = None) -> None:
        """Record on the host that the operation reached ``step`` (fenced by the lock)."""
        if self.intent is None:
            return
        self.phases.guard()
        self.intent = replace(self.intent.at(step, release), fresh_image=self.fresh_image)
        self.ctx.store.write_intent(self.intent)

    def maintenance_on(self) -> None:
        """``deploy --maintenance``: maintenance mode on before the migrations, turned off again
        if the deploy fails (and by the repair if it is killed). Already on (an operator's): it
        stays as it is, and on after the deploy."""
        ctx, phases, steps = self.ctx, self.phases, self.steps
        already = ctx.store.maintenance()
        if already is not None:
            phases.skip(
                "maintenance_on",
                f"maintenance mode is on already (since {already.since}, by {already.by}): it "
                "stays on after the deploy",
            )
            return

        def undo() -> None:
            end_maintenance(ctx.store, steps, ctx.deployment_id)
            if self.in_maintenance:
                self.in_maintenance = False
                phases.event(
                    EventKind.MAINTENANCE_OFF,
                    message=f"maintenance mode off: the {self.action} failed",
                )

        phases.on_failure("turn maintenance mode off", undo)
        mode = for_deploy(ctx.deployment_id)
        phases.run("maintenance_on", lambda: steps.set_maintenance(mode), summary=str)
        self.in_maintenance = True
        phases.event(
            EventKind.MAINTENANCE_ON,
            message=f"maintenance mode on for the migrations: {mode.message}",
            data=mode.to_dict(),
        )

    def maintenance_off(self) -> None:
        """Maintenance mode off once the new version serves (verified), before the watch."""
        ctx = self.ctx
        self.phases.run(
            "maintenance_off",
            lambda: end_maintenance(ctx.store, self.steps, ctx.deployment_id),
            summary=str,
        )
        self.in_maintenance = False
        self.phases.event(
            EventKind.MAINTENANCE_OFF, message="maintenance mode off: the new version serves"
        )

    def forget(self) -> None:
        """Clear the journal: the operation left nothing for the next one to finish or undo."""
        if self.intent is not None:
            self.phases.guard()
            self.ctx.store.clear_intent()
            self.intent = None

    def go_live(
        self, release: Release, current: Current | None, *, stop_old: bool | None = None
    ) -> None:
        """start → health → switch → verify → watch → retire: the blue-green core of every
        operation, each step journalled before it changes anything. With ``stop_old`` (by
        default ``deploy.old_version: stop``) the old version is retired right after the switch
        is verified, before the watch (only one version runs at any time); a switch-back then
        starts it again and health-gates it before the proxy goes back to it."""
        phases, steps = self.phases, self.steps
        previous = current.slot if current else None
        slot = release.slot
        replaces = previous is not None and previous != slot
        if stop_old is None:
            stop_old = self.ctx.config.deploy.old_version == "stop"
        stop_early = replaces and stop_old
        self.journal("start", release)
        phases.on_failure(f"remove candidate slot {slot}", lambda: steps.remove_slot(slot))
        phases.run("start", lambda: steps.start_slot(slot, release), summary=str)
        self.journal("health")
        phases.run("health", lambda: steps.gate(slot), summary=str)
        self.hook(HookPoint.BEFORE_SWITCH)
        if previous is not None and replaces:
            prior = previous
            phases.on_failure(f"switch back to {prior}", lambda: _discard(steps.switch_back(prior)))
        self.journal("switch")
        phases.run("switch", lambda: steps.switch(slot), summary=str)
        self.journal("switched")
        phases.event(
            EventKind.DEPLOY_SWITCHED,
            message=f"traffic on {slot}",
            data={"slot": slot, "previous_slot": previous},
        )
        phases.run("verify", lambda: steps.verify(release), summary=str)
        self.journal("verified")
        if self.in_maintenance:
            self.maintenance_off()
        self._live(release, previous if replaces else None, stop_early=stop_early)
        if stop_early:
            # Until the watch ends an interruption is undone: the repair starts the stopped old
            # version again and health-gates it before switching back (``RepairSteps.serve``).
            phases.run("retire", lambda: steps.retire(prior), summary=str)
        if not replaces:
            # The health gate proved it; with no earlier version there is nothing to switch back to.
            phases.skip("watch", "first deploy: no earlier version to switch back to")
        elif self.watch_s <= 0:
            phases.skip("watch", self.unwatched)
        else:
            watch_s = self.watch_s
            phases.run("watch", lambda: steps.watch(slot, watch_s), summary=str)
        self.journal("watched")
        phases.clear_cleanups()  # the new version serves: nothing to undo from here
        self.hook(HookPoint.AFTER_SWITCH)
        if replaces and not stop_early:
            phases.run("retire", lambda: steps.retire(prior), summary=str)
        self.journal("retired")

    def _live(self, release: Release, previous: str | None, *, stop_early: bool) -> None:
        """The ``deploy.live`` event: the switch is verified and the new version serves; what
        follows (the watch, retiring the old version) is said in its message."""
        self.live_s = time.monotonic() - self.started
        url = self.steps.url()
        if previous is None:
            then = "nothing served before it: no watch"
        elif self.watch_s > 0:
            standby = (
                "is stopped now and started again for a switch-back"
                if stop_early
                else "stands by for an instant switch-back"
            )
            then = f"watching it for {self.watch_s:g}s; {previous} {standby} if it fails (or on Ctrl-C)"
        else:
            then = f"not watched ({self.unwatched}): {previous} is retired now"
        self.phases.event(
            EventKind.DEPLOY_LIVE,
            message=f"{release.version} serving at {url} after {self.live_s:.1f}s; {then}",
            duration_s=round(self.live_s, 3),
            data={
                "slot": release.slot,
                "previous_slot": previous,
                "url": url,
                "watch_s": self.watch_s if previous is not None else 0,
            },
        )

    def run(self, body: Callable[[_Operation], Release]) -> DeployResult:
        """The operation, ending with its profile (``Phases.profile``) whatever its outcome."""
        self.started = time.monotonic()
        try:
            return self._run(body)
        finally:
            self.phases.profile(total_s=time.monotonic() - self.started, live_s=self.live_s)

    def _run(self, body: Callable[[_Operation], Release]) -> DeployResult:
        ctx, phases = self.ctx, self.phases
        started_at, started = now_iso(), self.started
        phases.started_at = started_at
        lock = self.lock = ctx.store.lock(
            ctx.deployment_id, self.action, ttl=ctx.config.deploy.lock_ttl
        )
        phases.event(
            self.kinds.started,
            message=f"{self.action} of {ctx.config.app.name} to {ctx.config.environment.name}",
            data={"phases": self.phases.pipeline.outline()},
        )
        with signals_raise():
            try:
                checked = self.checked = phases.run(
                    "validate",
                    lambda: validate(ctx, self.steps, allow_dirty=self.allow_dirty),
                    summary=Checked.summary,
                )
                from_config = {str(warning) for warning in ctx.config.warnings}
                for warning in checked.warnings:  # the config's are the deploy's to show
                    if warning not in from_config:
                        phases.warn(warning)
                phases.run(
                    "lock",
                    lambda: lock.acquire(wait=self.lock_wait),
                    summary=lambda _: f"held as {ctx.deployment_id}",
                )
                ctx.fence.arm(lock)
                phases.guard = lock.ensure_held
                phases.run("repair", lambda: _repair(ctx, self.steps, phases, lock), summary=str)
                self.begin()
                release = body(self)
                phases.run("record", lambda: self._record(release), summary=str)
                self._history(None, started_at, started, release=release)
            except LockLost as exc:
                # Another operation may own the environment now: nothing more is touched (no
                # cleanup, no history); whoever holds the lock repairs what is left.
                phases.event(self.kinds.failed, error=exc.message, phase="lock")
                raise
            except (
                CheckFailed,
                LockHeld,
                HostUnreachable,
                NeedsConfirmation,
                StateError,
                ToolTooOld,
                HostConflict,
            ) as exc:
                # A taken port or a conflicting subnet is found before the infrastructure
                # changes: the cleanups below forget what was built for it, and nothing else
                # was done.
                if phases.changed_anything and not isinstance(exc, HostConflict):
                    self._fail(exc, started_at, started)  # e.g. the connection dropped mid-deploy
                # Nothing was changed: these are not failed deploys.
                with signals_noted():
                    phases.run_cleanups()
                    if lock.held and not isinstance(exc, HostUnreachable):
                        self.forget()
                if isinstance(exc, LockHeld):
                    phases.event(EventKind.LOCK_BLOCKED, error=exc.message, phase="lock")
                elif isinstance(exc, HostUnreachable | HostConflict):
                    phases.event(self.kinds.failed, error=exc.message)
                raise
            except (ShipyardError, Interrupted) as exc:
                self._fail(exc, started_at, started)
            finally:
                ctx.fence.disarm()
                phases.guard = _unguarded  # what follows (after_deploy hooks) changes nothing
                with signals_noted():
                    lock.release()
        duration = time.monotonic() - started
        url = self.steps.url()
        phases.event(
            self.kinds.completed,
            message=f"{release.version} serving at {url}",
            duration_s=round(duration, 3),
        )
        self.hook(HookPoint.AFTER_DEPLOY)
        return DeployResult(ctx.deployment_id, release, url, duration)

    def _record(self, release: Release) -> str:
        summary = _record(self.ctx, self.steps, release)
        self.forget()
        return summary

    def _fail(self, exc: ShipyardError | Interrupted, started_at: str, started: float) -> NoReturn:
        """Undo what was done (newest first), record and report the failure, and raise it: as
        ``RollbackFailed`` when undoing failed too. A second signal meanwhile is noted, not
        obeyed, so the undoing is never cut short; a lost lock stops it (nothing is touched)."""
        if isinstance(exc, RollbackFailed):  # repairing an earlier operation failed: a person acts
            with signals_noted():
                self._history(
                    DeployFailed(self.phases.running or "repair", exc.message), started_at, started
                )
            raise exc
        failure = self._failure(exc)
        with signals_noted():
            try:
                cleanup_failures = self.phases.run_cleanups()
                if not cleanup_failures:
                    self.forget()  # undone: nothing left for the next operation
            except LockLost as lost:
                self.phases.event(self.kinds.failed, error=lost.message, phase="lock")
                raise
            if self.first_deploy and not cleanup_failures:
                self._say_what_is_left(failure)
            self._history(failure, started_at, started)
            self._report_failure(failure, rolled_back=not cleanup_failures, started=started)
        if cleanup_failures:
            raise RollbackFailed(
                f"{failure.message}; restoring the previous state also failed: "
                + "; ".join(cleanup_failures),
                hint="check `shipyard status ENV`; `shipyard repair ENV` (or the next deploy) "
                "retries bringing the previous version back",
            ) from exc
        raise failure from exc

    def _say_what_is_left(self, failure: DeployFailed) -> None:
        """A failed first deploy had no previous version to keep serving: its hint says what it
        created and left on the target, and how to remove it."""
        try:
            left = self.steps.leftovers()
        except ShipyardError as exc:
            self.phases.warn(f"could not list what the failed first deploy left: {exc.message}")
            return
        if not left:
            return
        environment = self.ctx.config.environment.name
        what = (
            f"nothing served before this first deploy; it left on {self.ctx.node}: "
            f"{', '.join(left)}. `shipyard destroy {environment} --yes` removes them "
            "(`--volumes` deletes the database volume too), or fix the problem and deploy again"
        )
        failure.hint = f"{failure.hint}; {what}" if failure.hint else what

    def _report_failure(self, failure: DeployFailed, *, rolled_back: bool, started: float) -> None:
        """Events and on_failure hooks for a failure whose cleanups have run."""
        phases = self.phases
        duration = round(time.monotonic() - started, 3)
        if failure.phase == "watch":
            phases.event(EventKind.HEALTH_DEGRADED, error=failure.message, phase=failure.phase)
        phases.event(
            self.kinds.failed,
            error=failure.message,
            phase=failure.phase,
            duration_s=duration,
            # What had completed: the starting point for cleanup or a retry.
            data={"completed": list(phases.completed)},
        )
        if failure.after_switch and rolled_back:
            phases.event(
                EventKind.DEPLOY_ROLLED_BACK,
                message=f"switched back to {self.previous}",
                phase=failure.phase,
                data={"slot": self.previous, "failed_slot": self.slot},
            )
        self.hook(HookPoint.ON_FAILURE, error=failure.message, failed_phase=failure.phase)

    def _failure(self, exc: ShipyardError | Interrupted) -> DeployFailed:
        failure = (
            exc
            if isinstance(exc, DeployFailed)
            else DeployFailed(self.phases.running or self.action, exc.message, hint=exc.hint)
        )
        if self.phases.past_no_return:
            return DeployFailed(
                failure.phase,
                f"{failure.message.split(': ', 1)[-1]} — rolled back after the switch: the previous "
                "version serves again",
                hint=failure.hint,
                after_switch=True,
            )
        return failure

    def _history(
        self,
        failure: DeployFailed | None,
        started_at: str,
        started: float,
        *,
        release: Release | None = None,
    ) -> None:
        if failure is None:
            result = "succeeded"
        else:
            result = "rolled_back" if failure.after_switch else "failed"
        if self.lock is not None and not self.lock.held:
            return  # it never held the lock (interrupted while waiting): nothing to record there
        entry = HistoryEntry(
            deployment_id=self.ctx.deployment_id,
            action=self.action,
            result=result,
            version=release.version if release else self.version,
            commit=release.commit if release else self.commit,
            slot=release.slot if release else self.slot,
            started_at=started_at,
            duration_s=round(time.monotonic() - started, 3),
            by=deployer(),
            phase=failure.phase if failure else None,
            error=self.ctx.config.masker(failure.message) if failure else None,
            release_id=release.id if release else None,
            steps=list(self.phases.completed),
        )
        try:
            self.ctx.store.append_history(entry)
        except ShipyardError as exc:
            self.phases.warn(f"could not record the {self.action} in history: {exc.message}")
        republish_deployment_metrics(
            self.ctx.config, self.ctx.store, self.steps.newest_snapshot, self.phases.warn
        )


def watch_window(config: Config, action: str, override: float | None) -> tuple[float, str]:
    """Seconds the new version of ``action`` is watched after the switch (``override``, else
    ``deploy.rollback_watch`` for a rollback — the release served before — and ``deploy.watch``
    otherwise), and why it is not watched when that is 0."""
    if override is not None:
        return max(0.0, override), "--no-watch"
    if action == "rollback":
        return config.deploy.rollback_watch, "deploy.rollback_watch is 0"
    return config.deploy.watch, "deploy.watch is 0"


@dataclass(frozen=True)
class _Kinds:
    started: EventKind
    completed: EventKind
    failed: EventKind


_KINDS = {
    "deploy": _Kinds(EventKind.DEPLOY_STARTED, EventKind.DEPLOY_COMPLETED, EventKind.DEPLOY_FAILED),
    "rollback": _Kinds(
        EventKind.ROLLBACK_STARTED, EventKind.ROLLBACK_COMPLETED, EventKind.ROLLBACK_FAILED
    ),
    # A rotation redeploys the live release: notifiers hear of it as of a deploy.
    "rotate-password": _Kinds(
        EventKind.DEPLOY_STARTED, EventKind.DEPLOY_COMPLETED, EventKind.DEPLOY_FAILED
    ),
}


def _record(ctx: OperationContext, steps: DeploySteps, release: Release) -> str:
    store = ctx.store
    releases = store.releases()
    if any(r.id == release.id for r in releases):  # a rollback: same release, another slot
        releases = [release if r.id == release.id else r for r in releases]
    else:
        releases.append(release)
    before = store.current()
    stay = retained(
        [r.id for r in releases],
        ctx.config.deploy.keep_releases,
        live=release.id,
        previous=before.release_id if before is not None else None,
    )
    kept = [r for r in releases if r.id in stay]
    dropped = [r for r in releases if r.id not in stay]
    store.save_releases(kept)
    store.set_current(Current(slot=release.slot, release_id=release.id, switched_at=now_iso()))
    steps.prune(dropped, kept)
    store.trim_history(ctx.config.deploy.history_days)
    return f"{release.version} live in {release.slot}; {len(kept)} release(s) kept"


def _unguarded() -> None:
    """The guard of phases that run without the lock."""


def _discard(_value: object) -> None:
    """Adapts a step that returns a summary to a cleanup callback."""
