"""``GcpProvider``: an environment on Cloud Run, with Cloud SQL, Artifact Registry, Secret
Manager and Cloud Logging, its state and lock in Cloud Storage.

``deploy``, ``rollback`` and ``repair`` run the pipeline every provider runs (``shipyard.deploy``)
over ``GcpSteps``; ``check`` is offline (the settings, where the Application Default Credentials
come from, this machine's engine for the build); ``plan`` lists what a deploy or a rollback would
do, reading only; ``status``, ``logs --app`` (Cloud Logging) and ``destroy`` (what shipyard
created, by its labels) read or remove. The other commands (maintenance mode, password rotation,
snapshot operations, monitoring, provision) refuse with ``NotOnGcp``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NoReturn

from shipyard import gcp
from shipyard.build import plan_build, read_version
from shipyard.config import Config, HttpCheck, parse_duration
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
from shipyard.errors import ConfigError, HostUnreachable
from shipyard.hosts import Host
from shipyard.providers.docker import (
    Destroyed,
    SnapshotFiles,
    Status,
    engine_ready,
    plan_lock_and_repair,
    plan_rollback_choice,
    recorded,
)
from shipyard.providers.gcp._environment import GcpEnvironment, NotOnGcp, state_location
from shipyard.providers.gcp._settings import GcpSettings
from shipyard.providers.gcp._steps import GcpSteps
from shipyard.state import Maintenance, other_slot


class GcpProvider:
    """Runs an environment on Cloud Run; ``host`` is this machine (the build runs here)."""

    name = "gcp"

    def __init__(self, host: Host) -> None:
        self.host = host

    def steps(self, ctx: OperationContext) -> GcpSteps:
        return GcpSteps(ctx, self.host, GcpEnvironment(ctx.config, self.host))

    # -- checks ------------------------------------------------------------------------------------
    def preflight(self, config: Config) -> str:
        """Offline: where the Application Default Credentials come from (never their values)
        and this machine's engine, which builds the image."""
        settings = GcpSettings.of(config)
        if not [c for c in config.health.checks if isinstance(c, HttpCheck)]:
            raise ConfigError.at(
                str(config.path), "health.checks",
                "a gcp:// environment needs an http check: Cloud Run's revisions are checked "
                "through their URLs (tcp, postgres and command checks cannot reach them)",
            )  # fmt: skip
        source = gcp.adc_source()
        if source is None:
            raise HostUnreachable(
                "no Application Default Credentials found (GOOGLE_APPLICATION_CREDENTIALS, or "
                "gcloud's application_default_credentials.json)",
                hint="run `gcloud auth application-default login`, or set "
                "GOOGLE_APPLICATION_CREDENTIALS to a service account key; never in shipyard.yml",
            )
        engine = engine_ready(Docker(self.host).info(), self.host.name)
        endpoint = gcp.GcpApi.endpoint()
        where = f" through {endpoint}" if endpoint else ""
        return (
            f"{source}; project {settings.project}, region {settings.region}{where}; state in "
            f"{state_location(settings)}; builds here: {engine}"
        )

    # -- plan ----------------------------------------------------------------------------------
    def plan(self, ctx: OperationContext, options: DeployOptions) -> list[PlanStep]:
        """What a deploy would do, read from the config, the state and Google Cloud; changes
        nothing."""
        config = ctx.config
        allow_dirty = options.allow_dirty or config.deploy.allow_dirty
        run_checks(
            config, lambda: self.preflight(config), local=ctx.local, operation=True,
            allow_dirty=allow_dirty,
        )  # fmt: skip
        env = GcpEnvironment(config, self.host)
        plan = plan_lock_and_repair(ctx)
        version = read_version(
            ctx.local, config.resolve(config.build.context), allow_dirty=allow_dirty,
            env_files=env_files(config),
        )  # fmt: skip
        build = plan_build(config, Docker(ctx.local), version, rebuild=options.rebuild)
        plan.append(PlanStep("build", build.describe(version)))
        registry = env.registry()
        plan += [PlanStep("deliver", str(a)) for a in registry.plan()]
        plan.append(PlanStep("deliver", f"push {build.tag} to Artifact Registry "
                                        f"({env.names.repository}) unless it is there"))  # fmt: skip
        database = env.database()
        if database is not None:
            plan += [PlanStep("infrastructure", str(a)) for a in database.plan()]
        values = {k: v for k, v in config.secrets.items().items() if v}  # as the deploy stores them
        plan += [PlanStep("infrastructure", str(a)) for a in env.secrets().plan(values)]
        if database is not None and config.database is not None and config.database.extensions:
            plan.append(PlanStep(
                "infrastructure",
                f"create and verify extensions {', '.join(config.database.extensions)} "
                f"(Cloud Run job {env.names.job('tools')})",
            ))  # fmt: skip
        current = ctx.store.current()
        live = ctx.store.release(current.release_id) if current else None
        plan += _schema_steps(config, live.migration_version if live else None, env)
        slot = other_slot(current.slot if current else None)
        plan += _go_live_steps(ctx, env, slot, current.slot if current else None, options)
        return planned(DEPLOY, plan)

    def plan_rollback(self, ctx: OperationContext, options: RollbackOptions) -> list[PlanStep]:
        """What `rollback` would do: the release it brings back and why, its revision (kept
        tagged) taking every request; reading only."""
        env = GcpEnvironment(ctx.config, self.host)

        def schema() -> int | None:
            current = ctx.store.current()
            live = ctx.store.release(current.release_id) if current else None
            return live.migration_version if live else None

        plan, chosen = plan_rollback_choice(ctx, options, schema)
        if chosen is None:
            return planned(ROLLBACK, plan)
        target, current = chosen
        slot = other_slot(current.slot)
        revision = env.names.revision(target.id)
        exists = env.service().revision(revision) is not None
        plan.append(PlanStep(
            "start",
            f"revision {revision} " + ("kept: tag it " + slot if exists else "is gone: deploy it "
                                       f"again from {target.image}, untouched") + "; nothing is built",
        ))  # fmt: skip
        plan.append(PlanStep("switch", f"every request to {revision} ({slot})"))
        plan.append(PlanStep("verify", f"GET <service URL>/version reports {target.commit[:7]}"))
        return planned(ROLLBACK, plan)

    # -- status ------------------------------------------------------------------------------------
    def health_check(self, ctx: OperationContext) -> Status:
        """What the service serves (its traffic), against the state."""
        env = GcpEnvironment(ctx.config, self.host)
        current = ctx.store.current()
        service = env.service()
        found = service.get()
        problems: list[str] = []
        upstreams: list[str] = []
        revisions: dict[str, str] = {}
        drift = None
        health, detail = "not deployed", ""
        url = ctx.config.providers.get("gcp", {}).get("url") or (found or {}).get("uri") or ""
        if found is not None:
            traffic = service.traffic(found)
            upstreams = [f"{t.tag or '-'}: {t.revision} {t.percent}%" for t in traffic]
            revisions = {
                t.revision: f"{t.percent}% of traffic, tag {t.tag or '-'}" for t in traffic
            }
            live = next((t for t in traffic if t.percent == 100), None)  # noqa: PLR2004
            condition = found.get("terminalCondition") or {}
            if current is not None and (live is None or live.tag != current.slot):
                drift = (
                    f"the state says {current.slot} serves; Cloud Run sends every request to "
                    f"{live.tag if live else 'no single revision'}"
                )
            health = "healthy" if condition.get("state") == "CONDITION_SUCCEEDED" else "unhealthy"
            detail = str(condition.get("message") or f"{live.revision if live else '?'} ready")
        elif current is not None:
            problems.append("the state records a release, but the Cloud Run service is gone")
        return Status(
            url=str(url), health=health, health_detail=detail, probed=None,
            proxy_upstreams=upstreams, drift=drift, containers=revisions, problems=problems,
            **recorded(ctx, current, ctx.store.maintenance()),
        )  # fmt: skip

    def migration_state(self, ctx: OperationContext) -> MigrationState:
        self._not_yet("db lint")

    # -- logs ----------------------------------------------------------------------------------------
    def app_logs(self, ctx: OperationContext, *, tail: int, since: str | None = None) -> str:
        """The app's log lines from Cloud Logging (every revision's), timestamped, the newest
        ``tail``; ``since``: a timestamp this method printed, or a duration back from now."""
        env = GcpEnvironment(ctx.config, self.host)
        lines = env.logging().app_lines(
            env.names.service, since=_since(since) if since else None, limit=max(tail, 0)
        )
        return "".join(f"{line}\n" for line in lines)

    # -- destroy ---------------------------------------------------------------------------------
    def snapshot_files(self, ctx: OperationContext) -> SnapshotFiles | None:
        """The environment's on-demand Cloud SQL backups (``None``: no instance of its own)."""
        env = GcpEnvironment(ctx.config, self.host)
        database = env.database()
        if database is None:
            return None
        found = database.backups()
        where = f"Cloud SQL ({env.settings.region}), on-demand backups of {env.names.instance}"
        return SnapshotFiles(where, len(found), 0)

    def cleanup(
        self, ctx: OperationContext, *, volumes: bool, snapshots: bool = False
    ) -> Destroyed:
        """Remove what shipyard created for the environment, by its labels, then its state,
        holding its lock: the service and its revisions, the jobs, the secrets. The Cloud SQL
        instance and the repository are kept unless ``volumes`` (the instance refuses while its
        deletion protection is on, before anything is removed)."""
        env = GcpEnvironment(ctx.config, self.host)
        lock = ctx.store.lock(ctx.deployment_id, "destroy", ttl=ctx.config.deploy.lock_ttl)
        lock.acquire()
        removed: list[str] = []
        kept: list[str] = []
        try:
            database = env.database()
            if database is not None and volumes:
                database.check_removable()  # refused before anything else is removed
            if env.service().delete():
                removed.append(f"Cloud Run service {env.names.service} and its revisions")
            for purpose in ("migrate", "release", "tools"):
                if env.jobs().delete(purpose):
                    removed.append(f"Cloud Run job {env.names.job(purpose)}")
            removed += [str(a) for a in env.secrets().remove_all()]
            files = self.snapshot_files(ctx) if database is not None else None
            if volumes:
                removed += [str(a) for a in env.registry().remove()]
                if database is not None:
                    removed += [str(a) for a in database.remove(final_backup=not snapshots)]
            else:
                kept.append(
                    f"Artifact Registry repository {env.names.repository}: `--volumes` deletes it"
                )
                if database is not None:
                    kept.append(f"Cloud SQL instance {env.names.instance}: `--volumes` deletes it")
            ctx.store.backend.remove_all()  # the lock goes with it
        finally:
            lock.release()
        return Destroyed(removed, kept, files, snapshots_removed=snapshots and files is not None)

    # -- not built -------------------------------------------------------------------------------
    def _not_yet(self, command: str) -> NoReturn:
        raise NotOnGcp(
            f"`shipyard {command}` is not built for Google Cloud environments in this version "
            "of shipyard",
            hint="on Google Cloud: `shipyard check`, `plan`, `deploy`, `rollback`, `repair`, "
            "`status`, `history`, `logs --app` and `destroy`",
        )

    def provision(self, ctx: OperationContext) -> list[str]:
        self._not_yet("provision")

    def deploy(self, ctx: OperationContext, options: DeployOptions) -> DeployResult:
        """The same pipeline as every provider's (``run_deploy``) over ``GcpSteps``."""
        return run_deploy(ctx, self.steps(ctx), options)

    def rollback(self, ctx: OperationContext, options: RollbackOptions) -> DeployResult:
        """A retained release's revision takes the traffic again (``run_rollback``): nothing is
        built."""
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


def _schema_steps(config: Config, applied: int | None, env: GcpEnvironment) -> list[PlanStep]:
    """The migrations newer than the live release's schema (as the state records it), the
    backup before them, and the release commands."""
    if config.database is None:
        return []
    migrations = config.database.migrations
    directory = config.resolve(migrations.path) if migrations is not None else None
    pending = pending_versions(directory, applied) if directory and directory.is_dir() else []
    steps = []
    if pending and env.settings.cloud_sql is not None and config.database.snapshots.enabled:
        steps.append(PlanStep(
            "snapshot",
            f"on-demand Cloud SQL backup of {env.names.instance}, waited for; then retention (the "
            f"newest {config.database.snapshots.keep_min} and those younger than "
            f"{config.database.snapshots.retention_days:g} days are kept)",
        ))  # fmt: skip
    if pending:
        steps.append(PlanStep(
            "migrate",
            f"apply {len(pending)} migration(s): {', '.join(map(str, pending))} (golang-migrate, "
            f"Cloud Run job {env.names.job('migrate')})",
        ))  # fmt: skip
    for command in config.database.release_commands:
        steps.append(PlanStep(
            "migrate", f"release command {command!r} (Cloud Run job {env.names.job('release')})"
        ))  # fmt: skip
    return steps


def _go_live_steps(
    ctx: OperationContext,
    env: GcpEnvironment,
    slot: str,
    previous: str | None,
    options: DeployOptions,
) -> list[PlanStep]:
    exists = env.service().get() is not None
    steps = [
        PlanStep(
            "start",
            f"{'update' if exists else 'create'} Cloud Run service {env.names.service}: the new "
            f"revision under tag {slot}, "
            + ("with no traffic" if exists else "taking every request (the first release)"),
        ),
        PlanStep(
            "health", f"the revision ready, then the health checks through the {slot} tag's URL"
        ),
        PlanStep(
            "switch",
            f"every request to the {slot} revision, {previous or 'nothing'} kept tagged at 0%",
        ),
        PlanStep("verify", "GET <service URL>/version reports the new commit"),
    ]
    seconds, _ = watch_window(ctx.config, "deploy", options.watch)
    if previous is not None and seconds:
        steps.append(PlanStep("watch", f"watch {seconds:g}s; switch back to {previous} on failure"))
    return steps


def _since(since: str) -> datetime:
    """``since`` (an ISO 8601 timestamp, or a duration back from now) as a time."""
    try:
        return datetime.fromisoformat(since.replace("Z", "+00:00"))
    except ValueError:
        return datetime.fromtimestamp(datetime.now(UTC).timestamp() - parse_duration(since), UTC)
