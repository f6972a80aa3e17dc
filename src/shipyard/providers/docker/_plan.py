"""What a deploy or a rollback would do, read from the config, the state and the engine."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from shipyard.build import plan_build, read_version
from shipyard.deploy import (
    DEPLOY,
    ROLLBACK,
    RULE,
    DeployOptions,
    OperationContext,
    PlanStep,
    RollbackOptions,
    Served,
    choose_rollback,
    env_files,
    planned,
    validate,
    watch_window,
)
from shipyard.docker import ContainerInfo, Docker
from shipyard.errors import StateError
from shipyard.health import describe_check
from shipyard.hosts import Host, LocalHost
from shipyard.providers.docker._infrastructure import PROXY_RECREATED
from shipyard.providers.docker._names import LABEL
from shipyard.providers.docker._status import _interrupted
from shipyard.providers.docker._steps import DockerSteps
from shipyard.state import Current, Lock, Release, other_slot, retained


class Planning:
    """``plan`` and ``plan_rollback`` of ``DockerProvider``."""

    host: Host

    if TYPE_CHECKING:

        def steps(self, ctx: OperationContext) -> DockerSteps: ...

    def plan(self, ctx: OperationContext, options: DeployOptions) -> list[PlanStep]:
        """What a deploy would do, read from the config, the state and the engine; changes nothing."""
        steps, config, docker = self.steps(ctx), ctx.config, self.steps(ctx).docker
        allow_dirty = options.allow_dirty or config.deploy.allow_dirty
        validate(ctx, steps, allow_dirty=allow_dirty)
        plan: list[PlanStep] = []
        plan += plan_lock_and_repair(ctx)
        version = read_version(
            ctx.local,
            config.resolve(config.build.context),
            allow_dirty=allow_dirty,
            env_files=env_files(config),
        )
        if config.deploy.require_ci:
            plan.append(PlanStep("ci", f"require passing CI for {version.short}"))
        build = plan_build(config, Docker(ctx.local), version, rebuild=options.rebuild)
        tag = build.tag
        plan.append(PlanStep("build", build.describe(version)))
        if not isinstance(self.host, LocalHost):
            plan.append(PlanStep("deliver", f"send {tag} to {self.host.name}"))
        if steps.names.network not in docker.networks():
            plan.append(PlanStep("infrastructure", f"create network {steps.names.network}"))
        if steps.proxy_definition_changed():
            plan.append(PlanStep("infrastructure", PROXY_RECREATED))
        database = steps._database()
        db = docker.container(database.container) if database is not None else None
        if database is not None and config.database is not None:
            if db is None or not db.running:
                extensions = ", ".join(config.database.extensions)
                what = (
                    f"start {database.container}, the client of the external database at "
                    f"{database.external.host}:{database.external.port}"
                    if database.external is not None
                    else f"start {steps.names.database}"
                )
                plan.append(
                    PlanStep(
                        "infrastructure",
                        f"{what} ({config.database.image}); create extensions {extensions}",
                    )
                )
            current_version = (
                database.migration_state().version if db is not None and db.running else None
            )
            pending = steps.pending_migrations(current_version)
            if pending:
                plan.append(
                    PlanStep(
                        "migrate",
                        f"apply {len(pending)} migration(s): {', '.join(map(str, pending))} "
                        f"({_schema_at(current_version, db)})",
                    )
                )
        current = ctx.store.current()
        slot = other_slot(current.slot if current else None)
        plan.append(PlanStep("start", f"start slot {slot} ({steps.names.slot(slot)}) with {tag}"))
        plan += _plan_go_live(
            steps,
            slot,
            current.slot if current else None,
            watch_window(config, "deploy", options.watch),
        )
        releases = ctx.store.releases()
        stay = retained(
            [*(r.id for r in releases), ctx.deployment_id],
            config.deploy.keep_releases,
            live=ctx.deployment_id,
            previous=current.release_id if current else None,
        )
        for dropped in (r for r in releases if r.id not in stay):
            plan.append(
                PlanStep(
                    "record",
                    f"forget release {dropped.version} ({dropped.id}), remove image {dropped.image}",
                )
            )
        plan += _plan_monitoring(steps)
        return planned(DEPLOY, plan)

    def plan_rollback(self, ctx: OperationContext, options: RollbackOptions) -> list[PlanStep]:
        """What `rollback` would do: which release it brings back and why (``choose_rollback``,
        the rule `rollback` follows), then its steps; read from the state and the engine,
        changing nothing."""
        steps, config = self.steps(ctx), ctx.config

        def schema() -> int | None:
            database = steps._database()
            db = steps.docker.container(database.container) if database is not None else None
            if database is None or db is None or not db.running:
                return None
            return database.migration_state().version

        plan, chosen = plan_rollback_choice(ctx, options, schema)
        if chosen is None:
            return planned(ROLLBACK, plan)
        target, current = chosen
        slot = other_slot(current.slot)
        kept = steps.slot_container(slot)
        if kept is not None and kept.labels.get(f"{LABEL}.release") == target.id:
            start = f"start the kept container {kept.name} ({target.image})"
        else:
            start = (
                f"start slot {slot} ({steps.names.slot(slot)}) from {target.image} with the "
                "environment it was deployed with"
            )
            if steps.docker.image(target.image) is None:
                start += f"; {target.image} is not on {self.host.name}: the start would fail"
        plan.append(PlanStep("start", start))
        plan += _plan_go_live(
            steps, slot, current.slot, watch_window(config, "rollback", options.watch)
        )
        plan += _plan_monitoring(steps)
        return planned(ROLLBACK, plan)


def _schema_at(version: int | None, database: ContainerInfo | None) -> str:
    if version is not None:
        return f"schema at version {version}"
    if database is not None and not database.running:
        return f"database container {database.name} is {database.status}: its schema is not known"
    return "empty database, no migrations applied"


def plan_rollback_choice(
    ctx: OperationContext, options: RollbackOptions, schema: Callable[[], int | None]
) -> tuple[list[PlanStep], tuple[Release, Current] | None]:
    """What every provider's `plan --rollback` begins with: the lock and the repair
    (``plan_lock_and_repair``), the release `rollback` would bring back and why (the rule it
    follows, ``choose_rollback``), and whether the schema (``schema()``: its version now, None
    when not known) is newer than that release's. Returns the steps, and the release with what
    is live (None: nothing to do)."""
    plan = plan_lock_and_repair(ctx)
    served = Served.read(ctx.store)
    current = served.current
    if current is None:
        raise StateError(
            f"nothing is deployed to {ctx.config.environment.name}: nothing to roll back"
        )
    live = next((r for r in served.releases if r.id == current.release_id), None)
    if options.why is not None and live is not None and live.version == options.to:
        plan.append(
            PlanStep("choose", f"nothing to do: {live.version} serves already, {options.why}")
        )
        return plan, None
    choice = choose_rollback(served, options.to, why=options.why)
    target = choice.release
    plan.append(
        PlanStep(
            "choose",
            f"bring back {target.version} ({target.commit[:7]}, release {target.id}): {choice.why}",
        )
    )
    plan += [PlanStep("choose", note) for note in choice.notes]
    if options.to is None or options.why is not None:
        plan.append(PlanStep("choose", f"the rule: {RULE}"))
    if any(step.phase == "repair" for step in plan):
        plan.append(
            PlanStep("choose", "chosen from the state as it is now: the repair comes first")
        )
    version = schema()
    if (
        version is not None
        and target.migration_version is not None
        and version > target.migration_version
    ):
        plan.append(
            PlanStep(
                "choose",
                f"the schema is at version {version}, newer than the {target.migration_version} "
                f"that {target.version} shipped with: it needs --yes (down-migrations are never run)",
            )
        )
    return plan, (target, current)


def plan_lock_and_repair(ctx: OperationContext) -> list[PlanStep]:
    """Who holds the lock, and the interrupted operation a deploy would finish or undo first."""
    plan = []
    lock = ctx.store.lock(ctx.deployment_id, "plan")
    holder = lock.holder()
    if holder is not None:
        state = (
            "stale, would be taken over" if lock.is_stale(holder) else "a deploy would wait or stop"
        )
        plan.append(PlanStep("lock", f"held: {Lock.describe(holder)} ({state})"))
    intent = _interrupted(ctx)
    if intent is not None:
        what = "record" if not intent.started else "finish" if intent.proven else "undo"
        plan.append(
            PlanStep(
                "repair",
                f"{what} the interrupted {intent.action} {intent.deployment_id} "
                f"(stopped at step {intent.step!r})",
            )
        )
    return plan


def _plan_monitoring(steps: DockerSteps) -> list[PlanStep]:
    """With ``monitoring.enabled``, the stack is brought up once the operation has finished."""
    if not steps.config.monitoring.enabled:
        return []
    project = steps.names.monitoring_project
    return [
        PlanStep(
            "record",
            f"then bring the monitoring stack {project} up (running containers whose "
            "configuration is unchanged keep running; a changed configuration is reloaded)",
        )
    ]


def _plan_go_live(
    steps: DockerSteps, slot: str, previous: str | None, window: tuple[float, str]
) -> list[PlanStep]:
    """health → switch → watch → retire, as a deploy or a rollback brings ``slot`` live;
    ``window``: the watch's seconds, and why none when 0 (``watch_window``)."""
    config = steps.config
    seconds, unwatched = window
    plan = [
        PlanStep(
            "health",
            f"{config.health.passes} passing round(s) of {', '.join(map(describe_check, config.health.checks))} within {config.health.start_timeout:g}s",
        )
    ]
    proxy = steps.docker.container(steps.names.proxy)
    if proxy is None or not proxy.running:
        plan.append(
            PlanStep("switch", f"start the proxy on port {config.proxy.http_port}, route to {slot}")
        )
    else:
        plan.append(
            PlanStep("switch", f"route {steps.url()} from {previous or 'nothing'} to {slot}")
        )
    if previous is not None and seconds <= 0:
        plan.append(PlanStep("watch", f"no watch ({unwatched})"))
        plan.append(PlanStep("retire", f"drain and stop slot {previous} (kept for rollback)"))
    elif previous is not None and config.deploy.old_version == "stop":
        plan.append(
            PlanStep(
                "retire",
                f"drain and stop slot {previous} right after the switch (deploy.old_version: "
                "stop; kept for rollback)",
            )
        )
        plan.append(
            PlanStep(
                "watch",
                f"watch {seconds:g}s; on failure start {previous} again, health-gate "
                "it and switch back",
            )
        )
    elif previous is not None:
        plan.append(PlanStep("watch", f"watch {seconds:g}s; switch back to {previous} on failure"))
        plan.append(PlanStep("retire", f"drain and stop slot {previous} (kept for rollback)"))
    return plan
