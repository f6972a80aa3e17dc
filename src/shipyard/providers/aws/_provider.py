"""``AwsProvider``: an environment on ECS (Fargate) behind an ALB, with its state and lock in S3.

``deploy``, ``rollback`` and ``repair`` run the pipeline every provider runs (``shipyard.deploy``)
over ``AwsSteps``; ``check`` is offline (the settings, the AWS credentials' source, this
machine's engine for the build); ``plan`` lists every AWS action a deploy or a rollback would
take, reading only; ``status``, ``logs --app`` (CloudWatch Logs) and ``destroy`` (what shipyard
created, by its tags) read or remove. The other commands (maintenance mode, password rotation,
snapshot operations, monitoring, provision) refuse with ``NotOnAws``.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NoReturn

from botocore.exceptions import BotoCoreError

from shipyard import aws
from shipyard.build import plan_build, read_version
from shipyard.config import Config, parse_duration
from shipyard.database import MigrationState, pending_versions
from shipyard.deploy import (
    DEPLOY,
    ROLLBACK,
    DeployOptions,
    DeployResult,
    OperationContext,
    PlanStep,
    RollbackOptions,
    RotateOptions,
    env_files,
    planned,
    run_checks,
    run_deploy,
    run_repair,
    run_rollback,
    watch_window,
)
from shipyard.docker import Docker
from shipyard.errors import HostUnreachable
from shipyard.hosts import Host
from shipyard.providers.aws._environment import AwsEnvironment, NotOnAws, state_location
from shipyard.providers.aws._settings import AwsSettings
from shipyard.providers.aws._snapshots import RdsSnapshot
from shipyard.providers.aws._steps import AwsSteps
from shipyard.providers.aws._tasks import TaskDefinitions, TaskSpec
from shipyard.providers.aws._traffic import SLOTS, AwsTraffic, remove_services
from shipyard.providers.docker import (
    Destroyed,
    SnapshotFiles,
    Status,
    engine_ready,
    plan_lock_and_repair,
    plan_rollback_choice,
    recorded,
)
from shipyard.state import Maintenance, other_slot


class AwsProvider:
    """Runs an environment on ECS (Fargate); ``host`` is this machine (the build runs here)."""

    name = "aws"

    def __init__(self, host: Host) -> None:
        self.host = host

    def steps(self, ctx: OperationContext) -> AwsSteps:
        return AwsSteps(ctx, self.host, AwsEnvironment(ctx.config))

    # -- checks ------------------------------------------------------------------------------------
    def preflight(self, config: Config) -> str:
        """Offline: the AWS credentials the standard chain finds (their source, never their
        values) and this machine's engine, which builds the image."""
        settings = AwsSettings.of(config)
        try:
            import boto3  # noqa: PLC0415 — AWS environments only

            credentials = boto3.session.Session(region_name=settings.region).get_credentials()
        except BotoCoreError as exc:
            raise HostUnreachable(
                f"AWS credentials: {exc}", hint="fix the profile or SSO login it names"
            ) from exc
        if credentials is None:
            raise HostUnreachable(
                "no AWS credentials found (environment, shared credentials or config file, "
                "SSO, container or instance role)",
                hint="`aws configure`, `aws sso login`, or AWS_PROFILE; never in shipyard.yml",
            )
        engine = engine_ready(Docker(self.host).info(), self.host.name)
        # AWS_ENDPOINT_URL: botocore's own setting, as the AWS CLI reads it.
        endpoint = settings.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
        where = f" through {endpoint}" if endpoint else ""
        return (
            f"AWS credentials from {credentials.method}; region {settings.region}{where}; "
            f"state in {state_location(settings)}; builds here: {engine}"
        )

    # -- plan ----------------------------------------------------------------------------------
    def plan(self, ctx: OperationContext, options: DeployOptions) -> list[PlanStep]:
        """Every AWS action a deploy would take, read from the config, the state and AWS; changes
        nothing."""
        config = ctx.config
        allow_dirty = options.allow_dirty or config.deploy.allow_dirty
        run_checks(
            config,
            lambda: self.preflight(config),
            local=ctx.local,
            operation=True,
            allow_dirty=allow_dirty,
        )
        env = AwsEnvironment(config)
        plan = plan_lock_and_repair(ctx)
        version = read_version(
            ctx.local,
            config.resolve(config.build.context),
            allow_dirty=allow_dirty,
            env_files=env_files(config),
        )
        build = plan_build(config, Docker(ctx.local), version, rebuild=options.rebuild)
        plan.append(PlanStep("build", build.describe(version)))
        tag = build.tag.rsplit(":", 1)[-1]  # the same tag in ECR
        plan.append(
            PlanStep(
                "deliver", f"push {build.tag} to ECR repository {env.names.repository} as {tag}"
            )
        )
        if config.database is not None and config.database.migrations is not None:
            plan.append(
                PlanStep(
                    "deliver",
                    f"build the migrations image ({config.database.migrations.image} with "
                    f"{config.database.migrations.path}) and push it as {tag}-migrations",
                )
            )
        infrastructure = env.infrastructure()
        plan += [PlanStep("infrastructure", str(a)) for a in infrastructure.plan()]
        database = env.database()
        if database is not None:
            plan += [PlanStep("infrastructure", str(a)) for a in database.plan()]
        if config.database is not None:
            extensions = ", ".join(config.database.extensions)
            plan.append(
                PlanStep(
                    "infrastructure", f"create and verify extensions {extensions} (one-off task)"
                )
            )
        current = ctx.store.current()
        live = ctx.store.release(current.release_id) if current else None
        plan += _schema_steps(config, live.migration_version if live else None, env)
        slot = other_slot(current.slot if current else None)
        plan += _go_live_steps(ctx, env, slot, current.slot if current else None, tag, options)
        return planned(DEPLOY, plan)

    def plan_rollback(self, ctx: OperationContext, options: RollbackOptions) -> list[PlanStep]:
        """What `rollback` would do: the release it brings back and why (``choose_rollback``),
        its revision in the idle slot, the switch; reading only."""
        env = AwsEnvironment(ctx.config)

        def schema() -> int | None:
            """The schema the live release left (the database is inside the VPC)."""
            current = ctx.store.current()
            live = ctx.store.release(current.release_id) if current else None
            return live.migration_version if live else None

        plan, chosen = plan_rollback_choice(ctx, options, schema)
        if chosen is None:
            return planned(ROLLBACK, plan)
        target, current = chosen
        revision = env.tasks().of_release(target.id)
        slot = other_slot(current.slot)
        service = env.names.service(slot)
        plan.append(
            PlanStep(
                "start",
                f"update ECS service {service} to {revision.rsplit('/', 1)[-1] if revision else '(its revision is gone: refused)'} "
                f"({env.settings.desired(ctx.config.environment.name)} task(s)); nothing is built",
            )
        )
        plan.append(PlanStep("health", f"wait for {service}'s deployment and healthy targets"))
        plan.append(PlanStep("switch", f"the listener forwards every request to {slot}"))
        plan.append(
            PlanStep(
                "verify",
                f"GET {AwsSteps(ctx, self.host, env).url()}/version reports {target.commit[:7]}",
            )
        )
        return planned(ROLLBACK, plan)

    # -- status ------------------------------------------------------------------------------------
    def health_check(self, ctx: OperationContext) -> Status:
        """What the listener serves, each slot's service and targets, against the state."""
        env = AwsEnvironment(ctx.config)
        current = ctx.store.current()
        traffic = env.traffic()
        url = AwsSteps(ctx, self.host, env).url()
        services: dict[str, str] = {}
        problems: list[str] = []
        upstreams: list[str] = []
        drift = None
        health, detail = "not deployed", ""
        if traffic is not None:
            live = traffic.live_slot()
            weights = traffic.weights()
            upstreams = [f"{slot}: weight {weights[slot]}" for slot in SLOTS]
            services = _services(env, traffic)
            if current is not None and live != current.slot:
                drift = f"the state says {current.slot} serves; the listener forwards to {live or 'no single slot'}"
            if live is not None:
                targets = traffic.health(live)
                detail = f"{targets.healthy} healthy target(s) in {env.names.target_group(live)}"
                health = "unhealthy" if targets.unhealthy or not targets.healthy else "healthy"
                problems += [f"target {t}" for t in targets.unhealthy]
        elif current is not None:
            problems.append(
                "the state records a release, but the listener or target groups are gone"
            )
        return Status(
            url=url,
            health=health,
            health_detail=detail,
            probed=None,
            proxy_upstreams=upstreams,
            drift=drift,
            containers=services,
            problems=problems,
            **recorded(ctx, current, ctx.store.maintenance()),
        )

    def migration_state(self, ctx: OperationContext) -> MigrationState:
        self._not_yet("db lint")

    # -- logs ----------------------------------------------------------------------------------------
    def app_logs(self, ctx: OperationContext, *, tail: int, since: str | None = None) -> str:
        """The app's log lines from CloudWatch Logs (every task's stream, one-off tasks'
        included), timestamped, the newest ``tail``; ``since``: a timestamp this method
        printed, or a duration back from now (``10m``)."""
        env = AwsEnvironment(ctx.config)
        params: dict[str, Any] = {
            "logGroupName": env.names.log_group,
            "logStreamNamePrefix": "app/",
        }
        if since is not None:
            params["startTime"] = _since_ms(since)
        pages = env.clients["logs"].get_paginator("filter_log_events").paginate(**params)
        newest: deque[tuple[int, str]] = deque(maxlen=max(tail, 0))
        try:
            for page in pages:
                for event in page.get("events", []):
                    if not str(event.get("logStreamName", "app/")).startswith("app/"):
                        continue  # (an endpoint that ignores the prefix)
                    newest.append((int(event["timestamp"]), str(event.get("message", ""))))
        except aws.ERRORS as exc:
            if aws.error_code(exc) == "ResourceNotFoundException":
                return ""  # no log group: nothing ran yet
            raise aws.translate("logs", "FilterLogEvents", exc, what=env.names.log_group) from exc
        lines = sorted(newest)
        return "".join(f"{_stamp(ms)} {message.rstrip()}\n" for ms, message in lines)

    # -- destroy ---------------------------------------------------------------------------------
    def snapshot_files(self, ctx: OperationContext) -> SnapshotFiles | None:
        """The environment's manual RDS snapshots (``None``: it has no RDS instance of its own)."""
        env = AwsEnvironment(ctx.config)
        if env.settings.rds is None:
            return None
        return _snapshot_files(env, env.snapshots().snapshots())

    def cleanup(
        self, ctx: OperationContext, *, volumes: bool, snapshots: bool = False
    ) -> Destroyed:
        """Remove what shipyard created for the environment on AWS, by its tags (what is not
        tagged as this environment's is never touched), then its state, holding its lock: the
        slots' services, the task definition revisions, the base resources
        (``AwsInfrastructure.remove``). The RDS instance is kept unless ``volumes`` (then RDS
        takes a final snapshot first); its manual snapshots unless ``snapshots``."""
        env = AwsEnvironment(ctx.config)
        lock = ctx.store.lock(ctx.deployment_id, "destroy", ttl=ctx.config.deploy.lock_ttl)
        lock.acquire()
        removed: list[str] = []
        kept: list[str] = []
        files = None
        try:
            database = env.database()
            # Refused (deletion protection) before anything else is removed.
            doomed = database.removal(instance=True) if database and volumes else []
            removed += remove_services(env.names, env.cluster, env.clients)
            for family in env.families():
                revisions = TaskDefinitions(env.names, env.settings, env.clients, family=family)
                count = len(revisions.deregister_all())
                if count:
                    removed.append(f"{count} revision(s) of task definition {family}")
            removed += [str(action) for action in env.infrastructure().remove()]
            if database is not None:
                if volumes:
                    for action in doomed:
                        action.run()
                        removed.append(str(action))
                elif database.instance() is not None:
                    kept.append(
                        f"RDS instance {env.names.database}: `--volumes` deletes it, after a final snapshot"
                    )
                files, removed_snapshots = self._snapshots_at_destroy(env, delete=snapshots)
                removed += removed_snapshots
            if database is not None and database.instance() is not None:
                kept.append(
                    f"the network of {env.names.stem} (VPC, security groups, RDS subnet and "
                    "parameter groups, as far as shipyard created them): the RDS instance still "
                    "runs in it; `shipyard destroy` again once RDS has deleted the instance "
                    "removes them"
                )
            else:
                if database is not None:
                    removed += [str(action) for action in database.remove_groups()]
                removed += [str(action) for action in env.network().remove()]
            ctx.store.backend.remove_all()  # the lock goes with it
        finally:
            lock.release()
        return Destroyed(removed, kept, files, snapshots_removed=snapshots and files is not None)

    def _snapshots_at_destroy(
        self, env: AwsEnvironment, *, delete: bool
    ) -> tuple[SnapshotFiles | None, list[str]]:
        found = env.snapshots().snapshots()
        if not found:
            return None, []
        files = _snapshot_files(env, found)
        if not delete:
            return files, []
        # The final snapshot RDS takes of a deleted instance is the database's last backup:
        # never deleted here, nor one still being made.
        doomed = [s for s in found if "-final-" not in s.name and s.status != "creating"]
        for snapshot in doomed:
            env.clients.call("rds", "DeleteDBSnapshot", snapshot.name,
                             DBSnapshotIdentifier=snapshot.name)  # fmt: skip
        return files, [f"RDS snapshot {s.name}" for s in doomed]

    # -- not built yet -------------------------------------------------------------------------
    def _not_yet(self, command: str) -> NoReturn:
        raise NotOnAws(
            f"`shipyard {command}` is not built yet for AWS environments in this version of shipyard",
            hint="on AWS: `shipyard check`, `plan`, `deploy`, `rollback`, `repair`, `status`, "
            "`history`, `logs --app` and `destroy`",
        )

    def provision(self, ctx: OperationContext) -> list[str]:
        self._not_yet("provision")

    def deploy(self, ctx: OperationContext, options: DeployOptions) -> DeployResult:
        """The same pipeline as every provider's (``run_deploy``) over ``AwsSteps``."""
        return run_deploy(ctx, self.steps(ctx), options)

    def rollback(self, ctx: OperationContext, options: RollbackOptions) -> DeployResult:
        """A retained release's task definition revision back in the idle slot, then the
        switch (``run_rollback``): nothing is built."""
        return run_rollback(ctx, self.steps(ctx), options)

    def repair(self, ctx: OperationContext, *, lock_wait: float = 0.0) -> str:
        return run_repair(ctx, self.steps(ctx), lock_wait=lock_wait)

    def rotate_password(self, ctx: OperationContext, options: RotateOptions) -> DeployResult:
        self._not_yet("db rotate-password")

    def maintenance(
        self, ctx: OperationContext, maintenance: Maintenance | None, *, lock_wait: float = 0.0
    ) -> str:
        self._not_yet("maintenance")

    def render(self, ctx: OperationContext) -> dict[str, str]:
        self._not_yet("render")

    def database(self, ctx: OperationContext) -> Any:
        self._not_yet("db")

    def watch_live(
        self, ctx: OperationContext, seconds: float, each: Callable[[dict[str, Any]], None]
    ) -> dict[str, Any]:
        self._not_yet("watch")

    def monitoring_up(self, ctx: OperationContext) -> str:
        self._not_yet("monitoring")

    def monitoring_status(self, ctx: OperationContext) -> Any:
        self._not_yet("monitoring")

    def monitoring_down(self, ctx: OperationContext, *, volumes: bool) -> str:
        self._not_yet("monitoring")


def _snapshot_files(env: AwsEnvironment, found: list[RdsSnapshot]) -> SnapshotFiles:
    """How ``destroy`` names the environment's manual RDS snapshots ``found``."""
    where = f"RDS ({env.settings.region}), manual snapshots of {env.names.database}"
    return SnapshotFiles(where, len(found), sum(s.size for s in found))


def _schema_steps(config: Config, applied: int | None, env: AwsEnvironment) -> list[PlanStep]:
    """The migrations newer than the live release's schema (as the state records it: the
    database is inside the VPC), the snapshot before them, and the release commands."""
    if config.database is None:
        return []
    migrations = config.database.migrations
    directory = config.resolve(migrations.path) if migrations is not None else None
    pending = pending_versions(directory, applied) if directory and directory.is_dir() else []
    steps = []
    if pending and env.settings.rds is not None and config.database.snapshots.enabled:
        steps.append(
            PlanStep(
                "snapshot",
                f"RDS manual snapshot of {env.names.database}, waited for; then retention "
                f"(the newest {config.database.snapshots.keep_min} and those younger than "
                f"{config.database.snapshots.retention_days:g} days are kept)",
            )
        )
    if pending:
        shown = ", ".join(map(str, pending))
        steps.append(
            PlanStep(
                "migrate",
                f"apply {len(pending)} migration(s): {shown} (golang-migrate, one-off task)",
            )
        )
    for command in config.database.release_commands:
        steps.append(PlanStep("migrate", f"release command {command!r} (one-off task)"))
    return steps


def _go_live_steps(
    ctx: OperationContext,
    env: AwsEnvironment,
    slot: str,
    previous: str | None,
    tag: str,
    options: DeployOptions,
) -> list[PlanStep]:
    config = ctx.config
    steps = []
    spec = TaskSpec(
        image=f"{env.names.repository}:{tag}",
        port=config.app.port,
        version=tag,
        commit="<commit>",
        release_id="<release>",
        execution_role_arn="<execution role>",
        env=dict(config.app.env),
    )
    changes = env.tasks().changes(spec)
    steps.append(
        PlanStep(
            "start",
            f"register a revision of task definition {env.names.family}: " + "; ".join(changes),
        )
    )
    desired = env.settings.desired(config.environment.name)
    service = env.names.service(slot)
    traffic = env.traffic()
    exists = traffic is not None and slot not in traffic.missing_services()
    steps.append(
        PlanStep(
            "start",
            f"{'update' if exists else 'create'} ECS service {service} to it ({desired} task(s))",
        )
    )
    steps.append(
        PlanStep(
            "health",
            f"wait for {service}'s ECS deployment and every target of "
            f"{env.names.target_group(slot)} healthy",
        )
    )
    steps.append(
        PlanStep(
            "switch",
            f"the listener forwards every request to {slot} ({env.names.target_group(slot)}), "
            f"{previous or 'nothing'} at weight 0",
        )
    )
    dns = env.load_balancer_dns()
    steps.append(
        PlanStep("verify", f"GET http://{dns or '<load balancer>'}/version reports the new commit")
    )
    seconds, _ = watch_window(config, "deploy", options.watch)
    if previous is not None and seconds:
        steps.append(PlanStep("watch", f"watch {seconds:g}s; switch back to {previous} on failure"))
    if previous is not None:
        steps.append(
            PlanStep("retire", f"scale {env.names.service(previous)} to 0 (kept for rollback)")
        )
    return steps


def _services(env: AwsEnvironment, traffic: AwsTraffic) -> dict[str, str]:
    names = [env.names.service(slot) for slot in SLOTS]
    found = env.clients.call("ecs", "DescribeServices", ", ".join(names),
                             cluster=env.cluster, services=names)  # fmt: skip
    described = {}
    for service in found.get("services", []):
        if service.get("status") != "ACTIVE":
            continue
        revision = str(service.get("taskDefinition", "?")).rsplit("/", 1)[-1]
        described[service["serviceName"]] = (
            f"{service.get('runningCount', 0)}/{service.get('desiredCount', 0)} running, {revision}"
        )
    return described


def _since_ms(since: str) -> int:
    """``since`` (an ISO 8601 timestamp, or a duration back from now) in epoch milliseconds."""
    try:
        when = datetime.fromisoformat(since.replace("Z", "+00:00"))
    except ValueError:
        return int((datetime.now(UTC).timestamp() - parse_duration(since)) * 1000)
    return int(when.timestamp() * 1000)


def _stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"
