"""``DockerProvider``: deploys to one Docker host through ``docker`` and ``docker compose``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shipyard.config import Config
from shipyard.database import DatabaseError, MigrationState
from shipyard.deploy import (
    DeployOptions,
    DeployResult,
    OperationContext,
    RollbackOptions,
    RotateOptions,
    run_deploy,
    run_maintenance,
    run_repair,
    run_rollback,
    run_rotate_password,
)
from shipyard.docker import Docker
from shipyard.errors import ShipyardError
from shipyard.event_kinds import EventKind
from shipyard.hosts import Host
from shipyard.providers.docker._base import engine_ready, refuse_taken_ports
from shipyard.providers.docker._database import DatabaseOperations
from shipyard.providers.docker._destroy import (
    Destroyed,
    SnapshotFiles,
    _built_images,
    _images_to_remove,
    _remove_state,
    _snapshot_files,
)
from shipyard.providers.docker._monitoring import MonitoringStack, MonitoringStatus
from shipyard.providers.docker._plan import Planning
from shipyard.providers.docker._ports import proxy_ports
from shipyard.providers.docker._stack import render_slot, to_yaml
from shipyard.providers.docker._status import (
    Status,
    _describe,
    _drift,
    _proxy_health,
    _serving_problems,
    _stack_containers,
    certificate_report,
    read_schema,
    schema_problem,
)
from shipyard.providers.docker._status import recorded as recorded_fields
from shipyard.providers.docker._steps import DockerSteps
from shipyard.state import Maintenance


class DockerProvider(Planning):
    """Deploys to one Docker host through ``docker`` and ``docker compose``."""

    name = "docker"

    def __init__(self, host: Host) -> None:
        self.host = host

    def steps(self, ctx: OperationContext) -> DockerSteps:
        return DockerSteps(ctx, self.host)

    def database(self, ctx: OperationContext) -> DatabaseOperations:
        """Snapshot operations (create, list, verify, restore, prune) on this host."""
        return DatabaseOperations(self.steps(ctx))

    def migration_state(self, ctx: OperationContext) -> MigrationState:
        """The migrations the environment's database has applied (none before its first deploy)."""
        return self.steps(ctx).applied_migrations()

    def preflight(self, config: Config) -> str:
        """The host's engine, checked as every operation checks it first (``engine_ready``), and
        the proxy's ports (``PortInUse`` when another process or container holds one)."""
        docker = Docker(self.host)
        found = engine_ready(docker.info(), self.host.name)
        refuse_taken_ports(config, docker)
        ports = " and ".join(str(port) for _, port in proxy_ports(config))
        found += f"; no other process or container holds port {ports} on {self.host.name}"
        if config.proxy.subnet is not None:
            found += f"; no other network on {self.host.name} overlaps proxy.subnet {config.proxy.subnet}"
        return found

    def provision(self, ctx: OperationContext) -> list[str]:
        return [self.steps(ctx).preflight()]

    def deploy(self, ctx: OperationContext, options: DeployOptions) -> DeployResult:
        result = run_deploy(ctx, self.steps(ctx), options)
        self._monitoring_after(ctx)
        return result

    def _monitoring_after(self, ctx: OperationContext) -> None:
        """With ``monitoring.enabled``, the stack is brought up after a deploy (unchanged
        containers keep running); that it failed is a warning, never the deploy's failure."""
        if not ctx.config.monitoring.enabled:
            return
        try:
            # The operation's record wrote the deployment metrics (``republish_deployment_metrics``).
            done = MonitoringStack(self.steps(ctx)).up(metrics=False)
        except ShipyardError as exc:
            ctx.phases().warn(f"monitoring: {exc.message} (`shipyard monitoring up` retries)")
            return
        ctx.phases().note(f"monitoring: {done}")

    def watch_live(
        self, ctx: OperationContext, seconds: float, each: Callable[[dict[str, Any]], None]
    ) -> dict[str, Any]:
        """``shipyard watch`` (see ``Observation.observe_live``)."""
        return self.steps(ctx).observe_live(seconds, each)

    def monitoring_up(self, ctx: OperationContext) -> str:
        """Bring the environment's monitoring stack up (see ``MonitoringStack.up``)."""
        return MonitoringStack(self.steps(ctx)).up()

    def monitoring_status(self, ctx: OperationContext) -> MonitoringStatus:
        return MonitoringStack(self.steps(ctx)).status()

    def monitoring_down(self, ctx: OperationContext, *, volumes: bool) -> str:
        return MonitoringStack(self.steps(ctx)).down(volumes=volumes)

    def app_logs(self, ctx: OperationContext, *, tail: int, since: str | None = None) -> str:
        """The live slot's log lines (with timestamps)."""
        steps = self.steps(ctx)
        return steps.docker.logs(steps.names.live, tail=tail, since=since, timestamps=True)

    def rollback(self, ctx: OperationContext, options: RollbackOptions) -> DeployResult:
        result = run_rollback(ctx, self.steps(ctx), options)
        self._monitoring_after(ctx)
        return result

    def repair(self, ctx: OperationContext, *, lock_wait: float = 0.0) -> str:
        return run_repair(ctx, self.steps(ctx), lock_wait=lock_wait)

    def maintenance(
        self, ctx: OperationContext, maintenance: Maintenance | None, *, lock_wait: float = 0.0
    ) -> str:
        """Maintenance mode on (``maintenance``) or off, recorded and loaded into the proxy."""
        return run_maintenance(ctx, self.steps(ctx), maintenance, lock_wait=lock_wait)

    def rotate_password(self, ctx: OperationContext, options: RotateOptions) -> DeployResult:
        """Give the database the env file's password and redeploy the live release with it."""
        steps = self.steps(ctx)
        database = steps._database()
        if database is None or database.external is not None:
            external = database is not None  # DATABASE_URL is in the env file
            raise DatabaseError(
                "this environment has no database run by shipyard: its password is not "
                "shipyard's to change",
                hint="the env file's DATABASE_URL names an external database: change the password "
                "there, put the new URL in the env file and deploy"
                if external
                else "shipyard.yml has no `database:` section",
            )
        return run_rotate_password(ctx, steps, options)

    def render(self, ctx: OperationContext) -> dict[str, str]:
        """The files a deploy writes on the host, for the slot that would go live next."""
        steps = self.steps(ctx)
        current = ctx.store.current()
        slot = "green" if current and current.slot == "blue" else "blue"
        files = {
            str(steps.layout.infra_compose): to_yaml(steps._infra()),
            str(steps.layout.slot_compose(slot)): to_yaml(
                render_slot(
                    ctx.config,
                    steps.names,
                    steps.layout,
                    slot,
                    image=f"{ctx.config.app.name}:<version>",
                    release="<release>",
                    version="<version>",
                    commit="<commit>",
                    deployment="<deployment>",
                )
            ),
            str(steps.layout.caddy_config): json.dumps(
                steps.caddy_config(read_only=True), indent=2
            ),
        }
        return files

    def health_check(self, ctx: OperationContext) -> Status:
        steps = self.steps(ctx)
        current = ctx.store.current()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="schema") as pool:
            # The schema is read in the database container (a `docker exec`) while the stack is
            # inspected and the proxy probed: each waits on a different server.
            schema = pool.submit(read_schema, steps) if current else None
            # Every container of the stack in one inspection: what the rest of the report reads.
            found = steps.docker.containers_named(_stack_containers(steps.names))
            containers = {
                name: _describe(info)
                for name, info in found.items()
                if info is not None or name != steps.names.switching  # there only mid-switch
            }
            recorded = ctx.store.maintenance()
            upstreams, problems = _drift(steps, found, current, recorded)
            drift = "; ".join(problems) or None
            health, detail, probed = "not deployed", "", None
            trouble: list[str] = []
            certificates: list[dict[str, Any]] = []
            if schema is not None:
                health, detail, probed = _proxy_health(steps)
                problem = schema_problem(steps, found, schema.result())
                trouble += _serving_problems(
                    steps, found, health, f"GET {probed} → {detail}", problem
                )
        if current and ctx.config.proxy.domains:
            certificates, failing = certificate_report(steps, time.time())
            trouble += failing
            for problem in failing:
                ctx.phases().event(EventKind.CERTIFICATE_FAILING, message=problem)
        return Status(
            url=steps.url(),
            health=health,
            health_detail=detail,
            probed=probed,
            proxy_upstreams=upstreams,
            drift=drift,
            containers=containers,
            problems=trouble,
            certificates=certificates,
            **recorded_fields(ctx, current, recorded),
        )

    def snapshot_files(self, ctx: OperationContext) -> SnapshotFiles | None:
        """The environment's snapshots on this host (``None``: it has no database of its own)."""
        store = self.steps(ctx)._snapshots()
        if store is None:
            return None
        return _snapshot_files(store, store.owned())

    def cleanup(
        self, ctx: OperationContext, *, volumes: bool, snapshots: bool = False
    ) -> Destroyed:
        """Remove the environment's containers, network, the images shipyard built for it and
        its state (and volumes with ``volumes``), holding its lock: never in the middle of a
        deploy (``LockHeld``). An image another environment's releases name (under the same
        state directory) or any container uses is kept, and said so. Its snapshots are backups:
        kept where they are (a later deploy of the environment finds them, and its retention
        manages them) unless ``snapshots``."""
        steps = self.steps(ctx)
        lock = ctx.store.lock(ctx.deployment_id, "destroy", ttl=ctx.config.deploy.lock_ttl)
        lock.acquire()
        try:
            images = _built_images(ctx)  # read before the state goes
            removed: list[str] = []
            kept: list[str] = []
            # The guard first: it would start the live container again as it is removed.
            if steps.docker.container(steps.names.guard) is not None:
                steps.docker.remove(steps.names.guard)
            for slot in ("blue", "green"):
                steps.docker.compose_down(steps.names.slot(slot))
                removed.append(steps.names.slot(slot))
            monitoring = MonitoringStack(steps)
            if monitoring.project in steps.docker.compose_projects():
                monitoring.down(volumes=volumes)
                removed.append(monitoring.project)
            steps.docker.compose_down(steps.names.infra_project, volumes=volumes)
            removed.append(steps.names.infra_project)
            if steps.names.network in steps.docker.networks():  # created by shipyard (proxy.subnet)
                result = steps.docker.remove_network(steps.names.network)
                if result.ok:
                    removed.append(f"network {steps.names.network}")
                else:
                    refusal = (result.stderr.strip().splitlines() or ["?"])[-1]
                    kept.append(f"network {steps.names.network}: docker refused: {refusal}")
            for image, why in _images_to_remove(ctx, steps.host, steps.docker, images):
                if why is not None:
                    kept.append(f"image {image}: {why}")
                    continue
                result = steps.docker.remove_image(image)
                if result.ok:
                    removed.append(f"image {image}")
                else:
                    refusal = (result.stderr.strip().splitlines() or ["?"])[-1]
                    kept.append(f"image {image}: docker refused: {refusal}")
            files, keep = self._snapshots_at_destroy(steps, delete=snapshots)
            _remove_state(ctx.store, keep=keep)  # the lock goes with it
        finally:
            lock.release()
        return Destroyed(removed, kept, files, snapshots_removed=snapshots and files is not None)

    def _snapshots_at_destroy(
        self, steps: DockerSteps, *, delete: bool
    ) -> tuple[SnapshotFiles | None, str | None]:
        """The environment's snapshots, deleted when asked; and the entry of the state
        directory to keep for them (when they are kept in it, as by default)."""
        store = steps._snapshots()
        if store is None:
            return None, None
        owned = store.owned()
        files = _snapshot_files(store, owned) if owned else None
        if delete:
            store.delete(owned)
            return files, None
        store.remove_partial()  # cut short: no backup
        inside = store.directory.parent == steps.layout.root
        return files, store.directory.name if owned and inside else None
