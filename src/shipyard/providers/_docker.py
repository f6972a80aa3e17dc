"""The ``docker`` provider: any host with a Docker engine (local, VPS, bare metal, any cloud VM)."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import httpx

from shipyard.build import Image
from shipyard.config import Config
from shipyard.database import Database, MigrationError, local_migration_versions
from shipyard.delivery import StderrProgress, deliver
from shipyard.deploy import (
    DeployOptions,
    DeployResult,
    OperationContext,
    RollbackOptions,
    run_deploy,
    run_rollback,
)
from shipyard.docker import ContainerInfo, Docker
from shipyard.errors import DeployFailed, HostUnreachable, ShipyardError, StateError
from shipyard.health import Target, build_checks, wait_healthy
from shipyard.hosts import Host, LocalHost
from shipyard.providers._stack import (
    LABEL,
    Layout,
    Names,
    app_env,
    database_env,
    env_file_text,
    managed_database,
    render_infra,
    render_slot,
    to_yaml,
)
from shipyard.proxy import ADMIN_PORT, CaddyAdmin, render_caddy, upstreams_of
from shipyard.state import Release

_MIN_COMPOSE = (2, 24)  # env_file `format: raw`
_MIN_DOCKER = (20, 10)


@dataclass(frozen=True)
class Status:
    """What ``shipyard status`` reports."""

    url: str
    version: str | None
    commit: str | None
    slot: str | None
    release_id: str | None
    deployed_at: str | None
    deployed_by: str | None
    health: str  # healthy, degraded, unhealthy, unreachable, not deployed
    health_detail: str
    proxy_upstreams: list[str]
    drift: str | None
    containers: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class DockerSteps:
    """The deploy steps on one Docker host."""

    def __init__(self, ctx: OperationContext, host: Host) -> None:
        self.ctx = ctx
        self.config: Config = ctx.config
        self.host = host
        self.docker = Docker(host)
        self.names = Names(self.config.app.name, self.config.environment.name)
        self.layout = Layout(ctx.store.root)

    # -- helpers ------------------------------------------------------------------------------------
    def _database(self) -> Database | None:
        if self.config.database is None or not managed_database(self.config):
            return None
        return Database(self.docker, self.names.database, self.config.database)

    def _write(self, path: PurePosixPath, text: str) -> None:
        self.host.put(path, text.encode(), mode=0o600)

    def _published(self, container: str, port: int) -> int:
        info = self.docker.container(container)
        if info is None or port not in info.ports:
            raise ShipyardError(f"container {container} does not publish port {port}")
        return self.host.tunnel(info.ports[port])

    def slot_container(self, slot: str) -> ContainerInfo | None:
        """The container of ``slot``: named after the slot, or the live name while it serves."""
        for name in (self.names.slot(slot), self.names.live):
            info = self.docker.container(name)
            if info is not None and info.labels.get(f"{LABEL}.slot") == slot:
                return info
        return None

    def live_slot(self) -> str | None:
        """The slot whose container carries the live name (what the proxy routes to)."""
        info = self.docker.container(self.names.live)
        return info.labels.get(f"{LABEL}.slot") if info is not None else None

    def admin(self) -> CaddyAdmin:
        return CaddyAdmin(self._published(self.names.proxy, ADMIN_PORT))

    def url(self) -> str:
        proxy = self.config.proxy
        if proxy.domains:
            suffix = "" if proxy.https_port == 443 else f":{proxy.https_port}"  # noqa: PLR2004
            return f"https://{proxy.domains[0]}{suffix}"
        suffix = "" if proxy.http_port == 80 else f":{proxy.http_port}"  # noqa: PLR2004
        host = "localhost" if isinstance(self.host, LocalHost) else self.host.name
        return f"http://{host}{suffix}"

    # -- phases ---------------------------------------------------------------------------------------
    def preflight(self) -> str:
        info = self.docker.info()
        if info.compose_version is None:
            raise HostUnreachable(
                f"on {self.host.name}: Docker Compose v2 (`docker compose`) is not installed",
                hint="install the compose plugin (scripts/engine.sh does on this kind of machine)",
            )
        engine = tuple(int(x) for x in re.findall(r"\d+", info.server_version)[:2])
        if engine < _MIN_DOCKER:
            raise ShipyardError(
                f"on {self.host.name}: Docker {info.server_version} found; "
                f"{'.'.join(map(str, _MIN_DOCKER))} or newer is needed"
            )
        found = tuple(int(x) for x in re.findall(r"\d+", info.compose_version)[:2])
        if found < _MIN_COMPOSE:
            raise ShipyardError(
                f"on {self.host.name}: Docker Compose {info.compose_version} is too old; "
                f"{'.'.join(map(str, _MIN_COMPOSE))} or newer is needed"
            )
        return f"docker {info.server_version}, compose {info.compose_version}"

    def deliver(self, image: Image) -> str:
        if isinstance(self.host, LocalHost):
            return f"{image.tag} built on this engine"
        delivered = deliver(
            image.tag,
            image.id,
            self.ctx.local,
            self.host,
            registry=self.config.deploy.registry,
            secrets=self.config.secrets,
            progress=StderrProgress(f"deliver {image.tag} to {self.host.name}"),
        )
        return f"{image.tag}: {delivered}"

    def ensure_infrastructure(self) -> str:
        self._write(
            self.layout.infra_compose, to_yaml(render_infra(self.config, self.names, self.layout))
        )
        database = self._database()
        if database is None:
            self.docker.compose(
                self.names.infra_project,
                self.layout.infra_compose,
                ["create", "--no-recreate", "proxy"],
            )
            return "external database" if self.config.database else "no database"
        assert self.config.database is not None  # noqa: S101
        self._write(
            self.layout.database_env,
            env_file_text(database_env(self.config), source="database env"),
        )
        self.docker.compose_up(
            self.names.infra_project,
            self.layout.infra_compose,
            services=["db"],
            wait_timeout=self.config.database.ready_timeout,
        )
        versions = database.ensure_extensions(self.config.database.extensions)
        return "database ready; " + ", ".join(f"{k} {v}" for k, v in versions.items())

    def migrate(self, release: Release) -> int | None:
        database = self._database()
        section = self.config.database
        if section is None or section.migrations is None:
            return None
        source = self.config.resolve(section.migrations.path)
        if database is None:
            raise ShipyardError(
                "migrations against an external database are not supported by this version"
            )
        before = database.migration_state()
        if before.dirty:
            raise MigrationError(
                f"the schema is dirty at version {before.version}: a previous migration failed half-way",
                hint=(
                    "inspect the schema, fix it by hand, then mark the version clean with "
                    f"`migrate force {before.version}` (or the version before it) and deploy again"
                ),
            )
        files = local_migration_versions(source)
        if not files:
            return before.version
        if before.version is not None and before.version >= files[-1]:
            return before.version
        target = self.layout.migrations(release.id)
        self.host.put_tree(source, target)
        password = self.config.secrets.get(section.password_env) or ""
        self._write(
            self.layout.migrate_env, env_file_text({"PGPASSWORD": password}, source="migrate env")
        )
        database.migrate(
            migrations=target,
            network=self.names.network,
            env_file=self.layout.migrate_env,
            timeout=section.migrations.timeout,
            image=section.migrations.image,
        )
        after = database.migration_state()
        if after.dirty:
            raise MigrationError(f"the schema is dirty at version {after.version} after migrating")
        return after.version

    def start_slot(self, slot: str, release: Release) -> str:
        container = self.names.slot(slot)
        kept = self.slot_container(slot)
        if kept is not None and kept.name == self.names.live:
            raise DeployFailed("start", f"slot {slot} is the live slot; refusing to replace it")
        if kept is not None and kept.labels.get(f"{LABEL}.release") == release.id:
            # The release's own container, kept stopped for exactly this: start it as it was.
            try:
                self.docker.start(container)
            except ShipyardError as exc:
                raise DeployFailed("start", f"slot {slot} did not start: {exc.message}") from exc
            return f"{container} restarted ({release.image})"
        self._write(
            self.layout.slot_env(slot),
            env_file_text(app_env(self.config, self.names), source="app env"),
        )
        compose = render_slot(
            self.config,
            self.names,
            self.layout,
            slot,
            image=release.image,
            release=release.id,
            version=release.version,
            commit=release.commit,
        )
        self._write(self.layout.slot_compose(slot), to_yaml(compose))
        try:
            self.docker.compose_up(
                self.names.slot(slot),
                self.layout.slot_compose(slot),
                force_recreate=True,
                wait_timeout=60,
            )
        except ShipyardError as exc:
            logs = self.docker.logs(self.names.slot(slot), tail=20)
            raise DeployFailed(
                "start", f"slot {slot} did not start: {exc.message}\n  app log:\n{_indent(logs)}"
            ) from exc
        return f"{self.names.slot(slot)} running {release.image}"

    def remove_slot(self, slot: str) -> None:
        self.docker.compose_down(self.names.slot(slot))

    def _target(self, slot: str) -> Target:
        info = self.slot_container(slot)
        if info is None:
            raise ShipyardError(f"slot {slot} has no container")
        container = info.name
        port = self._published(container, self.config.app.port)
        section = self.config.database
        managed = self._database() is not None
        return Target(
            base_url=f"http://127.0.0.1:{port}",
            port=port,
            container=container,
            docker=self.docker,
            database_container=self.names.database if managed else None,
            database_user=section.user if section else None,
            database_name=section.name if section else None,
        )

    def gate(self, slot: str) -> str:
        container = self.names.slot(slot)
        try:
            target = self._target(slot)
        except ShipyardError as exc:  # it exited before its port could be reached
            info = self.docker.container(container)
            state = f"{info.status}, exit code {info.exit_code}" if info else "absent"
            raise DeployFailed(
                "health",
                f"slot {slot} is not running ({state}): {exc.message}\n  app log:\n"
                f"{_indent(self.docker.logs(container, tail=20))}",
                hint="the previous version kept serving; fix the app or its config and deploy again",
            ) from exc
        container = target.container

        def alive() -> str | None:
            info = self.docker.container(container)
            if info is None:
                return f"container {container} disappeared"
            if not info.running:
                return f"container {container} is {info.status} (exit code {info.exit_code})"
            return None

        result = wait_healthy(
            build_checks(self.config.health), target, self.config.health, alive=alive
        )
        if not result.ok:
            answers = (
                "\n".join(f"    {r.name}: {r.detail}" for r in result.last) or "    (no answer)"
            )
            logs = self.docker.logs(container, tail=20)
            raise DeployFailed(
                "health",
                f"slot {slot} never became healthy: {result.reason}\n  last answers:\n{answers}\n"
                f"  app log:\n{_indent(logs)}",
                hint="the previous version kept serving; fix the app or its config and deploy again",
            )
        return f"{self.config.health.passes} consecutive passes after {result.rounds} round(s)"

    def caddy_config(self) -> dict[str, Any]:
        return render_caddy(self.config.proxy, self.names.live, self.config.app.port)

    def _ensure_proxy(self) -> CaddyAdmin:
        """The proxy running with the rendered config (loaded only when it differs)."""
        config = self.caddy_config()
        self._write(self.layout.caddy_config, json.dumps(config, indent=2))
        proxy = self.docker.container(self.names.proxy)
        if proxy is None or not proxy.running:
            self.docker.compose_up(
                self.names.infra_project,
                self.layout.infra_compose,
                services=["proxy"],
                wait_timeout=60,
            )
        admin = self.admin()
        _poll(admin.ready, seconds=30, what="the proxy's admin API")
        if admin.config() != config:
            admin.load(config)
        return admin

    def switch(self, slot: str) -> str:
        """Make ``slot`` live: its container takes the live name (the old one gets its slot name back)."""
        self._ensure_proxy()
        target = self.slot_container(slot)
        if target is None:
            raise ShipyardError(f"slot {slot} has no container to switch to")
        if target.name == self.names.live:
            return f"{self.names.live} is already slot {slot}"
        current = self.docker.container(self.names.live)
        if current is not None:
            old_slot = current.labels.get(f"{LABEL}.slot", "old")
            self.docker.rename(self.names.live, self.names.slot(old_slot))
        # From here until the next rename no container has the live name: the proxy holds
        # requests and retries them for proxy.dial_retry seconds.
        self.docker.rename(target.name, self.names.live)
        return f"{self.names.live} → slot {slot} ({target.labels.get(f'{LABEL}.version', '?')})"

    def verify(self, release: Release) -> str:
        path = self.config.deploy.verify_path
        if not path:
            return "skipped (deploy.verify_path is empty)"
        if self.config.proxy.domains:
            return "through-proxy check skipped: the proxy serves HTTPS for its domains only"
        url = f"http://127.0.0.1:{self.host.tunnel(self.config.proxy.http_port)}{path}"
        last = ""
        for _ in range(20):
            try:
                response = httpx.get(url, timeout=5)
                if release.commit in response.text:
                    return f"{path} through the proxy reports {release.commit[:7]}"
                last = f"{response.status_code} {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = str(exc)
            time.sleep(0.5)
        raise DeployFailed(
            "verify",
            f"{path} through the proxy does not report commit {release.commit[:7]}: {last}",
        )

    def watch(self, slot: str) -> str:
        """After the switch: health checks and the proxy's 5xx rate for ``deploy.watch``."""
        section = self.config.deploy
        if section.watch <= 0:
            return "skipped (deploy.watch is 0)"
        admin = self.admin()
        baseline = admin.traffic()
        checks = build_checks(self.config.health)
        target = self._target(slot)
        deadline = time.monotonic() + section.watch
        failing = rounds = 0
        seen = baseline.since(baseline)
        while True:
            rounds += 1
            results = [check.run(target, self.config.health.timeout) for check in checks]
            failing = failing + 1 if not all(r.ok for r in results) else 0
            if failing >= self.config.health.failures:
                detail = "; ".join(r.detail for r in results if not r.ok)
                raise DeployFailed(
                    "watch", f"slot {slot} turned unhealthy after the switch: {detail}"
                )
            seen = admin.traffic().since(baseline)
            if seen.total >= section.min_requests and seen.error_rate > section.max_error_rate:
                raise DeployFailed(
                    "watch",
                    f"{seen.errors} of {seen.total} requests through the proxy failed with 5xx "
                    f"({seen.error_rate:.0%} > {section.max_error_rate:.0%}) after the switch",
                )
            if time.monotonic() >= deadline:
                break
            time.sleep(min(self.config.health.interval, max(0.0, deadline - time.monotonic())))
        return f"healthy for {section.watch:g}s; {seen.total} request(s), {seen.errors} 5xx"

    def retire(self, slot: str) -> str:
        """Drain the old slot (no new requests reach it; wait for its in-flight ones), then stop it."""
        info = self.slot_container(slot)
        if info is None or not info.running:
            return f"slot {slot} was not running"
        container = info.name
        address = info.addresses.get(self.names.network, container)
        upstream = f"{address}:{self.config.app.port}"
        admin = self.admin()
        deadline = time.monotonic() + self.config.deploy.drain_timeout
        while (in_flight := admin.in_flight(upstream)) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.docker.stop(container, timeout=self.config.app.stop_grace_period)
        left = f", {in_flight} request(s) still in flight at the drain timeout" if in_flight else ""
        return f"{container} drained and stopped (kept for rollback){left}"

    def schema_version(self) -> int | None:
        database = self._database()
        return database.migration_state().version if database is not None else None

    def prune(self, dropped: list[Release], kept: list[Release]) -> None:
        in_use = {r.image_id for r in kept} | {r.image for r in kept}
        for release in dropped:
            if release.image_id not in in_use and release.image not in in_use:
                self.docker._run(["image", "rm", release.image], check=False, timeout=120)


class DockerProvider:
    """Deploys to one Docker host through ``docker`` and ``docker compose``."""

    name = "docker"

    def __init__(self, host: Host) -> None:
        self.host = host

    def steps(self, ctx: OperationContext) -> DockerSteps:
        return DockerSteps(ctx, self.host)

    def provision(self, ctx: OperationContext) -> list[str]:
        return [self.steps(ctx).preflight()]

    def deploy(self, ctx: OperationContext, options: DeployOptions) -> DeployResult:
        return run_deploy(ctx, self.steps(ctx), options)

    def rollback(self, ctx: OperationContext, options: RollbackOptions) -> DeployResult:
        return run_rollback(ctx, self.steps(ctx), options)

    def render(self, ctx: OperationContext) -> dict[str, str]:
        """The files a deploy writes on the host, for the slot that would go live next."""
        steps = self.steps(ctx)
        current = ctx.store.current()
        slot = "green" if current and current.slot == "blue" else "blue"
        files = {
            str(steps.layout.infra_compose): to_yaml(
                render_infra(ctx.config, steps.names, steps.layout)
            ),
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
                )
            ),
            str(steps.layout.caddy_config): json.dumps(steps.caddy_config(), indent=2),
        }
        return files

    def health_check(self, ctx: OperationContext) -> Status:
        steps = self.steps(ctx)
        current = ctx.store.current()
        release = ctx.store.release(current.release_id) if current else None
        containers = {
            name: _describe(steps.docker.container(name)) for name in _stack_containers(steps.names)
        }
        upstreams: list[str] = []
        problems: list[str] = []
        proxy = steps.docker.container(steps.names.proxy)
        if proxy is not None and proxy.running:
            try:
                upstreams = upstreams_of(steps.admin().config())
            except ShipyardError as exc:
                problems.append(f"proxy admin API unreachable: {exc.message}")
            expected = upstreams_of(steps.caddy_config())
            if not problems and upstreams != expected:
                problems.append(
                    f"proxy routes to {upstreams or 'nothing'}, its config says {expected}"
                )
        elif current:
            problems.append("the proxy is not running")
        live = steps.live_slot()
        if current and live != current.slot:
            problems.append(
                f"{steps.names.live} is slot {live or 'nobody'}, state says {current.slot}"
            )
        drift = "; ".join(problems) or None
        health, detail = "not deployed", ""
        if current:
            health, detail = _proxy_health(steps)
        return Status(
            url=steps.url(),
            version=release.version if release else None,
            commit=release.commit if release else None,
            slot=current.slot if current else None,
            release_id=current.release_id if current else None,
            deployed_at=current.switched_at if current else None,
            deployed_by=release.deployed_by if release else None,
            health=health,
            health_detail=detail,
            proxy_upstreams=upstreams,
            drift=drift,
            containers=containers,
        )

    def cleanup(self, ctx: OperationContext, *, volumes: bool) -> list[str]:
        """Remove the environment's containers and network (and volumes with ``volumes``)."""
        steps = self.steps(ctx)
        removed = []
        for slot in ("blue", "green"):
            steps.docker.compose_down(steps.names.slot(slot))
            removed.append(steps.names.slot(slot))
        steps.docker.compose_down(steps.names.infra_project, volumes=volumes)
        removed.append(steps.names.infra_project)
        ctx.store.host.run(["rm", "-rf", str(ctx.store.root)])
        return removed


def _stack_containers(names: Names) -> list[str]:
    return [names.database, names.proxy, names.live, names.slot("blue"), names.slot("green")]


def _describe(info: ContainerInfo | None) -> str:
    if info is None:
        return "absent"
    slot = info.labels.get(f"{LABEL}.slot")
    return (
        info.status
        + (f" ({info.health})" if info.health else "")
        + (f", slot {slot}" if slot else "")
    )


def _proxy_health(steps: DockerSteps) -> tuple[str, str]:
    path = next((c.path for c in steps.config.health.checks if c.kind == "http"), "/health")
    url = f"http://127.0.0.1:{steps.host.tunnel(steps.config.proxy.http_port)}{path}"
    try:
        response = httpx.get(url, timeout=5)
    except httpx.HTTPError as exc:
        return "unreachable", str(exc)
    try:
        body = response.json()
        status = str(body.get("status", "")) if isinstance(body, dict) else ""
    except json.JSONDecodeError:
        status = ""
    if not status:
        status = "healthy" if response.status_code < 400 else "unhealthy"  # noqa: PLR2004
    return status, f"{path} → {response.status_code}"


def _poll(condition: Any, *, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() >= deadline:
            raise StateError(f"{what} did not become ready within {seconds:g}s")
        time.sleep(0.25)


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in (text or "(empty)").splitlines()[-20:])
