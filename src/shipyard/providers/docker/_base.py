"""The Docker steps' shared state (config, host, engine, names, layout) and small helpers
every capability uses: the lock's fence, published ports, slot containers, the proxy's admin
API, the database and its snapshot store, and the polling loop."""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from shipyard.config import Config
from shipyard.database import Database, MigrationState, SnapshotStore
from shipyard.deploy import OperationContext
from shipyard.docker import ContainerInfo, Docker, EngineInfo, version_problems
from shipyard.errors import HostUnreachable, PortInUse, ShipyardError, StateError, ToolTooOld
from shipyard.events import Event
from shipyard.health import Target
from shipyard.hosts import Host, LocalHost
from shipyard.providers.docker._env import database_login_env, env_file_text, external_database
from shipyard.providers.docker._names import LABEL, Layout, Names
from shipyard.providers.docker._network import subnet_conflict
from shipyard.providers.docker._ports import taken_ports
from shipyard.providers.docker._stack import render_infra
from shipyard.proxy import ADMIN_PORT, LOOKUP_REFRESH_S, CaddyAdmin
from shipyard.waiting import SYSTEM, Clock, Interval, wait_until

_T = TypeVar("_T")


def engine_ready(info: EngineInfo, host: str, *, compose: bool = True) -> str:
    """What a host's engine offers, when it is what shipyard needs: Compose v2 installed, both
    new enough (``HostUnreachable`` without Compose, ``ToolTooOld`` when older). ``compose=False``:
    the engine alone (an operation that runs no Compose command)."""
    if compose and info.compose_version is None:
        raise HostUnreachable(
            f"on {host}: Docker Compose v2 (`docker compose`) is not installed",
            hint="install the compose plugin (scripts/engine.sh does on this kind of machine)",
        )
    problems = version_problems(info.server_version, info.compose_version if compose else None)
    if problems:
        raise ToolTooOld(f"on {host}: " + "; ".join(problems))
    found = f"docker {info.server_version} reachable on {host}"
    return f"{found}; compose {info.compose_version}" if compose else found


def refuse_taken_ports(config: Config, docker: Docker) -> None:
    """``PortInUse`` when another process or container holds a port the proxy needs on
    ``docker``'s host; ``SubnetConflict`` when ``proxy.subnet`` cannot be the environment
    network's."""
    taken = taken_ports(config, docker)
    if taken:
        raise PortInUse(taken)
    conflict = subnet_conflict(config, docker)
    if conflict is not None:
        raise conflict


def infra_digest(infra: str) -> str:
    """The digest of the infra project's compose file that ``infra/verified.json`` records."""
    return hashlib.sha256(infra.encode()).hexdigest()


class StepsBase:
    """The state every capability of the Docker steps shares, and its small helpers."""

    def __init__(self, ctx: OperationContext, host: Host) -> None:
        self.ctx = ctx
        self.config: Config = ctx.config
        self.host = host
        self.docker = Docker(host)
        self.names = Names(self.config.app.name, self.config.environment.name)
        self.layout = Layout(ctx.store.root)
        self._switched_at: float | None = None  # time.monotonic() of this operation's last switch
        # How often the running proxy looks the names up again (``_ensure_proxy`` reads it: a
        # proxy started by an earlier shipyard may keep another refresh than LOOKUP_REFRESH_S).
        self._lookup_refresh_s = LOOKUP_REFRESH_S
        # The schema as ``plan_migrations`` read it, for ``migrate`` right after (under the lock
        # nothing changes it in between): read once per deploy.
        self._planned: MigrationState | None = None
        # The migration state the infrastructure's check read in its round trip, for the plan.
        self._prefetched: MigrationState | None = None
        self.clock: Clock = SYSTEM  # where verify and the watch get time (tests replace it)
        self._compose_found: str | None = None  # what ``compose_ready`` found

    @functools.cached_property
    def engine(self) -> EngineInfo:
        """The host's Docker engine version and platform (asked once; Compose is asked by
        ``compose_ready``, only when needed)."""
        return self.docker.info(compose=False)

    def compose_ready(self) -> str:
        """The engine and Compose as ``engine_ready`` wants them (asked once per operation, before
        the first Compose command): ``HostUnreachable`` without Compose, ``ToolTooOld`` when
        either is too old."""
        if self._compose_found is None:
            compose = replace(self.engine, compose_version=self.docker.compose_version())
            self._compose_found = engine_ready(compose, self.host.name)
        return self._compose_found

    @functools.cached_property
    def http(self) -> httpx.BaseTransport:
        """The transport of the operation's plain-HTTP requests on this machine (health checks,
        the proxy's admin API): set up once. It speaks plain HTTP only (an https:// request
        is refused), so it reads no CA bundle (50 ms a transport). No connection is kept alive:
        a connection on the loopback costs nothing, and one a server closed while idle would
        fail a request."""
        return _Kept(
            httpx.HTTPTransport(verify=False, limits=httpx.Limits(max_keepalive_connections=0))
        )

    @functools.cached_property
    def docker_socket(self) -> str | None:
        """The host engine's Unix socket (mounted into the guard), ``None`` when it has none."""
        return self.docker.socket_path()

    def _infra(self) -> dict[str, Any]:
        return render_infra(self.config, self.names, self.layout, docker_socket=self.docker_socket)

    def _database(self) -> Database | None:
        """The environment's database: the container shipyard runs, or the external one the
        env file's URL names, through its client container (``None``: no database)."""
        if self.config.database is None:
            return None
        external = external_database(self.config)
        if external is None:
            return Database(self.docker, self.names.database, self.config.database)
        section, endpoint, _ = external
        return Database(self.docker, self.names.database_client, section, external=endpoint)

    def _verified_record(self) -> dict[str, Any] | None:
        """What the last full infrastructure check recorded (``infra/verified.json``), ``None``
        when there is none or it cannot be read."""
        raw = self.host.get(self.layout.infra_verified)
        try:
            record = json.loads(raw) if raw is not None else None
        except ValueError:
            return None
        return record if isinstance(record, dict) else None

    def _write(self, path: PurePosixPath, text: str) -> None:
        self.host.put(path, text.encode(), mode=0o600)

    def _published(self, container: str | ContainerInfo, port: int) -> int:
        """The local port reaching ``port`` of ``container`` (inspected unless given)."""
        info = self.docker.container(container) if isinstance(container, str) else container
        if info is None or port not in info.ports:
            name = container if isinstance(container, str) else container.name
            raise ShipyardError(f"container {name} does not publish port {port}")
        return self.host.tunnel(info.ports[port])

    def _fence(self) -> None:
        """Before every change: this operation still holds the environment's lock."""
        self.ctx.fence.check()

    def slot_container(self, slot: str) -> ContainerInfo | None:
        """The container of ``slot``: named after the slot, or the live name while it serves (or
        the switching name, if a switch was cut short)."""
        for name in (self.names.slot(slot), self.names.live, self.names.switching):
            info = self.docker.container(name)
            if info is not None and info.labels.get(f"{LABEL}.slot") == slot:
                return info
        return None

    def live_slot(self) -> str | None:
        """The slot whose container carries the live name (what the proxy routes to)."""
        info = self.docker.container(self.names.live)
        return info.labels.get(f"{LABEL}.slot") if info is not None else None

    def _running_slots(self) -> list[ContainerInfo]:
        """The environment's running app containers, whatever their names."""
        found = self.docker.labelled(self.names.labels(role="app"))
        return [info for info in found if info.running]

    def admin(self, proxy: ContainerInfo | None = None) -> CaddyAdmin:
        """The proxy's admin API (``proxy``: its container, already inspected)."""
        return CaddyAdmin(
            self._published(proxy or self.names.proxy, ADMIN_PORT), transport=self.http
        )

    def url(self) -> str:
        proxy = self.config.proxy
        if proxy.domains:
            suffix = "" if proxy.https_port == 443 else f":{proxy.https_port}"  # noqa: PLR2004
            return f"https://{proxy.domains[0]}{suffix}"
        suffix = "" if proxy.http_port == 80 else f":{proxy.http_port}"  # noqa: PLR2004
        host = "localhost" if isinstance(self.host, LocalHost) else self.host.name
        return f"http://{host}{suffix}"

    def _refuse_taken_ports(self) -> None:
        refuse_taken_ports(self.config, self.docker)

    def _login_error(self, database: Database) -> str | None:
        """Why the app could not log in to the database with what the env file says now
        (``None``: it can), tried from a one-off container on the app's network."""
        assert self.config.database is not None  # noqa: S101
        env_file = self.layout.login_env
        self._write(
            env_file,
            env_file_text(database_login_env(self.config, self.names), source="login env"),
        )
        try:
            return database.login_error(
                image=self.config.database.image,
                network=self.names.network,
                env_file=env_file,
                labels=self.names.labels(role="login-check"),
            )
        finally:
            self.host.run(["rm", "-f", str(env_file)], check=False)

    def newest_snapshot(self) -> str | None:
        """When the environment's newest snapshot was taken (ISO 8601; ``None``: none)."""
        store = self._snapshots()
        owned = store.owned() if store is not None else []
        return owned[0].created_at if owned else None

    def _snapshots(self) -> SnapshotStore | None:
        database = self._database()
        if database is None:
            return None
        section = database.section
        directory = (
            PurePosixPath(section.snapshots.dir) if section.snapshots.dir else self.layout.snapshots
        )
        return SnapshotStore(
            self.docker,
            database.container,
            section,
            directory,
            app=self.config.app.name,
            environment=self.config.environment.name,
            keep_extensions=database.external is not None,
        )

    def _warn(self, message: str, *, note: bool = False) -> None:
        self.ctx.bus.emit(
            Event(
                kind="operation.note" if note else "operation.warning",
                deployment_id=self.ctx.deployment_id,
                app=self.config.app.name,
                environment=self.config.environment.name,
                message=message,
            )
        )

    def _target(self, slot: str, info: ContainerInfo | None = None) -> Target:
        """What the checks look at in ``slot`` (``info``: its container, already inspected)."""
        info = info or self.slot_container(slot)
        if info is None:
            raise ShipyardError(f"slot {slot} has no container")
        port = self._published(info, self.config.app.port)
        database = self._database()
        return Target(
            base_url=f"http://127.0.0.1:{port}",
            port=port,
            container=info.name,
            docker=self.docker,
            database_container=database.container if database else None,
            database_user=database.section.user if database else None,
            database_name=database.section.name if database else None,
            transport=self.http,
        )

    if TYPE_CHECKING:
        # Steps of one capability that another calls (each defined in its own mixin).
        def _settle_switching(self) -> None: ...

        def gate(self, slot: str) -> str: ...

        def park(self, slot: str, *, remove_if_from: str | None = None) -> str: ...

        def retire(self, slot: str) -> str: ...

        def switch(self, slot: str) -> str: ...


class _Kept(httpx.BaseTransport):
    """A plain-HTTP transport the clients that use it do not close (each request's client
    closes its transport on exit): it lives as long as the steps."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme != "http":
            raise httpx.UnsupportedProtocol(
                f"{request.url}: this transport speaks plain HTTP only", request=request
            )
        return self._inner.handle_request(request)

    def close(self) -> None:
        """Left open for the next request."""


# Asked at once, then after pauses doubling from 20 ms up to 250 ms.
_BACK_OFF = Interval(0.02, 2, 0.25)


def _poll(
    condition: Callable[[], _T | None],
    *,
    seconds: float,
    what: str,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> _T:
    """``condition()``'s first value other than ``None``, asked at once, then after pauses doubling from
    20 ms up to 250 ms, for up to ``seconds``."""
    value = wait_until(
        condition,
        timeout=seconds,
        interval=_BACK_OFF,
        clock=Clock(clock, sleep),
        done=lambda answer: answer is not None,
    )
    if value is None:
        raise StateError(f"{what} did not become ready within {seconds:g}s")
    return value
