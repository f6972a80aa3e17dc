"""The ``docker`` provider: any host with a Docker engine (local, VPS, bare metal, any cloud VM)."""

from __future__ import annotations

import functools
import hashlib
import json
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar

from ruamel.yaml import YAML

from shipyard.build import Image, plan_build, read_version
from shipyard.config import Config, DatabaseSection
from shipyard.database import (
    Database,
    DatabaseError,
    Finding,
    MigrationError,
    MigrationLintFailed,
    MigrationPlan,
    MigrationState,
    PasswordRotation,
    Snapshot,
    SnapshotError,
    SnapshotStore,
    lint_files,
    local_migration_files,
    local_migration_versions,
    password_refused,
    scram_verifier,
    verifier_matches,
)
from shipyard.delivery import DeliveryError, StderrProgress, deliver
from shipyard.deploy import (
    RULE,
    DeployOptions,
    DeployResult,
    OperationContext,
    RollbackOptions,
    RotateOptions,
    Served,
    choose_rollback,
    env_files,
    run_deploy,
    run_repair,
    run_rollback,
    run_rotate_password,
    validate,
    watch_window,
)
from shipyard.docker import ContainerInfo, Docker, EngineInfo, version_problems
from shipyard.errors import (
    DeployFailed,
    HostUnreachable,
    PortInUse,
    ShipyardError,
    StateError,
    ToolTooOld,
)
from shipyard.events import Event
from shipyard.health import Target, build_checks, describe_check, wait_healthy
from shipyard.hosts import Host, LocalHost
from shipyard.providers._network import ensure_network, subnet_conflict
from shipyard.providers._ports import proxy_ports, taken_ports
from shipyard.providers._stack import (
    LABEL,
    Layout,
    Names,
    app_env,
    as_compose_env,
    compose_env_file_text,
    database_env,
    database_login_env,
    database_url,
    env_file_text,
    managed_database,
    release_command_env,
    render_infra,
    render_slot,
    to_yaml,
    with_values,
)
from shipyard.proxy import (
    ADMIN_PORT,
    LOOKUP_REFRESH_S,
    Answer,
    CaddyAdmin,
    Endpoint,
    endpoints,
    judge_health,
    probe,
    render_caddy,
    reports_commit,
    trust,
    upstreams_of,
)
from shipyard.state import Intent, Lock, Release, StateStore, now_iso, other_slot
from shipyard.waiting import Clock, Interval, wait_until

if TYPE_CHECKING:
    from shipyard.providers._database import DatabaseOperations

_T = TypeVar("_T")


@dataclass(frozen=True)
class PlanStep:
    """One action a deploy would take."""

    phase: str
    action: str


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
    health_detail: str  # what the proxy answered (a redirect is never healthy)
    probed: str | None  # the URL the health came from, with its SNI/Host and where it connected
    proxy_upstreams: list[str]
    drift: str | None
    containers: dict[str, str]
    # An operation that was interrupted, and what the next one will do about it.
    interrupted: str | None = None
    # What is wrong beyond drift: nothing serves, the app is unhealthy, the schema is dirty.
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.drift is None and self.interrupted is None and not self.problems

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class SnapshotFiles:
    """An environment's snapshots on one host: how many, their size, where."""

    where: str  # host:directory
    count: int
    size: int  # bytes, dumps together


@dataclass(frozen=True)
class Destroyed:
    """What ``destroy`` removed on one host, and what it kept and why. ``snapshots``: the
    environment's snapshots, kept (backups outlive the environment) unless asked for, and then
    ``snapshots_removed``."""

    removed: list[str]
    kept: list[str] = field(default_factory=list)
    snapshots: SnapshotFiles | None = None
    snapshots_removed: bool = False


PROXY_RECREATED = (
    "recreate the proxy (its ports, image, volumes or DNS settings changed): for the second it "
    "takes to restart, new connections are refused"
)


def engine_ready(info: EngineInfo, host: str) -> str:
    """What a host's engine offers, when it is what shipyard needs: Compose v2 installed, both
    new enough (``HostUnreachable`` without Compose, ``ToolTooOld`` when older)."""
    if info.compose_version is None:
        raise HostUnreachable(
            f"on {host}: Docker Compose v2 (`docker compose`) is not installed",
            hint="install the compose plugin (scripts/engine.sh does on this kind of machine)",
        )
    problems = version_problems(info.server_version, info.compose_version)
    if problems:
        raise ToolTooOld(f"on {host}: " + "; ".join(problems))
    return f"docker {info.server_version} reachable on {host}; compose {info.compose_version}"


class DockerSteps:
    """The deploy steps on one Docker host."""

    def __init__(self, ctx: OperationContext, host: Host) -> None:
        self.ctx = ctx
        self.config: Config = ctx.config
        self.host = host
        self.docker = Docker(host)
        self.names = Names(self.config.app.name, self.config.environment.name)
        self.layout = Layout(ctx.store.root)
        self._switched_at: float | None = None  # time.monotonic() of this operation's last switch
        # The schema as ``plan_migrations`` read it, for ``migrate`` right after (under the lock
        # nothing changes it in between): read once per deploy.
        self._planned: MigrationState | None = None

    # -- helpers ------------------------------------------------------------------------------------
    @functools.cached_property
    def engine(self) -> EngineInfo:
        """The host's Docker engine and Compose versions and platform (asked once)."""
        return self.docker.info()

    @functools.cached_property
    def docker_socket(self) -> str | None:
        """The host engine's Unix socket (mounted into the guard), ``None`` when it has none."""
        return self.docker.socket_path()

    def _infra(self) -> dict[str, Any]:
        return render_infra(self.config, self.names, self.layout, docker_socket=self.docker_socket)

    def _database(self) -> Database | None:
        if self.config.database is None or not managed_database(self.config):
            return None
        return Database(self.docker, self.names.database, self.config.database)

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
        """The environment's running app containers (all answer to the ``slots`` alias)."""
        found = self.docker.labelled(self.names.labels(role="app"))
        return [info for info in found if info.running]

    def admin(self, proxy: ContainerInfo | None = None) -> CaddyAdmin:
        """The proxy's admin API (``proxy``: its container, already inspected)."""
        return CaddyAdmin(self._published(proxy or self.names.proxy, ADMIN_PORT))

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
        found = engine_ready(self.engine, self.host.name)
        self._refuse_taken_ports()
        return found

    def _refuse_taken_ports(self) -> None:
        """``PortInUse`` when another process or container holds a port the proxy needs;
        ``SubnetConflict`` when ``proxy.subnet`` cannot be the environment network's."""
        taken = taken_ports(self.config, self.host)
        if taken:
            raise PortInUse(taken)
        conflict = subnet_conflict(self.config, self.docker)
        if conflict is not None:
            raise conflict

    def deliver(self, image: Image) -> str:
        """Send the app image, then the support images the host lacks. An image built for
        another platform than the host's engine (an arm64 laptop, an amd64 server) is refused
        before anything is sent: it would stop at "exec format error" once started."""
        if isinstance(self.host, LocalHost):
            return f"{image.tag} built on this engine"
        engine = self.engine
        built = Docker(self.ctx.local).image(image.id)
        if built is not None and not built.runs_on(engine):
            raise DeliveryError(
                f"{image.tag} is built for {built.platform} (this machine's engine) but "
                f"{self.host.name} runs {engine.platform}: its containers would fail with "
                "'exec format error'",
                hint=f"deploy from a machine or CI runner whose Docker engine is {engine.platform}, "
                "or with DOCKER_HOST pointing at such an engine: the image is built for the "
                "engine that builds it",
            )
        delivered = deliver(
            image.tag,
            image.id,
            self.ctx.local,
            self.host,
            registry=self.config.deploy.registry,
            secrets=self.config.secrets,
            progress=StderrProgress(f"deliver {image.tag} to {self.host.name}"),
        )
        return "; ".join([f"{image.tag}: {delivered}", *self._deliver_support_images(engine)])

    def _support_images(self) -> list[str]:
        """The images next to the app's: proxy, database, golang-migrate."""
        refs = [self.config.proxy.image]
        if self.config.deploy.guard_image:
            refs.append(self.config.deploy.guard_image)
        database = self.config.database
        if database is not None:
            if self._database() is not None:
                refs.append(database.image)
            if database.migrations is not None:
                refs.append(database.migrations.image)
        return list(dict.fromkeys(refs))

    def _deliver_support_images(self, engine: EngineInfo) -> list[str]:
        """Support images the host lacks are streamed from the operator's engine when it has
        them for the host's platform (hosts without registry access get everything they need);
        the others are left for the host to pull, which picks its own platform."""
        here, done = Docker(self.ctx.local), []
        for ref in self._support_images():
            if self.docker.image(ref) is not None:
                continue
            local = here.image(ref)
            if local is None:
                done.append(f"{ref}: pulled by {self.host.name}")
                continue
            if not local.runs_on(engine):
                done.append(
                    f"{ref}: pulled by {self.host.name} ({engine.platform}; "
                    f"this machine's copy is {local.platform})"
                )
                continue
            delivered = deliver(
                ref,
                local.id,
                self.ctx.local,
                self.host,
                progress=StderrProgress(f"deliver {ref} to {self.host.name}"),
            )
            done.append(f"{ref}: {delivered}")
        return done

    def ensure_infrastructure(self) -> str:
        """The network, proxy, guard and database as configured, the extensions created and the
        app's credentials checked. When nothing changed since the last full check (the same
        definition, the same containers running, see ``_unchanged_infrastructure``) only cheap
        checks run: the extensions present and the env file's password the role's."""
        infra = to_yaml(self._infra())
        unchanged = self._unchanged_infrastructure(infra)
        if unchanged is not None:
            return unchanged
        summary = self._full_infrastructure(infra)
        self._remember_infrastructure(infra)
        return summary

    def _infra_containers(self) -> dict[str, str]:
        """Role → container name of what the infra project runs."""
        services = self._infra()["services"]
        names = {"proxy": self.names.proxy, "guard": self.names.guard, "db": self.names.database}
        return {role: name for role, name in names.items() if role in services}

    def _remember_infrastructure(self, infra: str) -> None:
        """After a full check: the definition it applied and the containers it verified (the
        proxy by the definition hash Compose labels it with: it may be started later, at the
        switch), so that the next operation can tell nothing changed."""
        containers: dict[str, str | None] = {}
        for role, name in self._infra_containers().items():
            info = self.docker.container(name)
            containers[role] = info.id if info is not None and info.running else None
        record = {
            "definition": hashlib.sha256(infra.encode()).hexdigest(),
            "containers": containers,
            "proxy_config_hash": self.docker.compose_config_hash(
                self.names.infra_project, self.layout.infra_compose, "proxy"
            ),
            "verified_at": now_iso(),
        }
        self._write(self.layout.infra_verified, json.dumps(record, indent=2) + "\n")

    def _unchanged_infrastructure(self, infra: str) -> str | None:
        """What still holds of the last full check, or ``None`` when a full check is needed:
        the definition (compose file: images, ports, volumes, guard, database settings) changed,
        or a container is missing, stopped, unhealthy, off the network or another than the one
        verified (recreated), or the proxy was created from another definition. Kept on this
        path: the extensions are read and must all be there, and the role's stored SCRAM
        verifier must match the env file's password (a changed password gets the full login
        check and its message). Skipped: ``compose up`` and its wait, ``CREATE EXTENSION``, the
        login from a one-off container, the port check (the running proxy holds the ports)."""
        raw = self.host.get(self.layout.infra_verified)
        try:
            record = json.loads(raw) if raw is not None else None
        except ValueError:
            record = None
        roles = self._infra_containers()
        named = self.docker.containers_named(list(roles.values()))
        found = {role: named[name] for role, name in roles.items()}
        if not infra_still_verified(record, infra, found, network=self.names.network):
            return None
        assert isinstance(record, dict)  # noqa: S101 — infra_still_verified checked it
        database, section = self._database(), self.config.database
        said = f"unchanged since {record.get('verified_at', '?')}: containers running"
        if database is None or section is None:
            return said
        facts = database.facts()
        if facts.missing(section.extensions):
            return None
        password = self.config.secrets.get(section.password_env) or ""
        if verifier_matches(facts.role_password, password) is not True:
            return None  # the full check logs in as the app would, and says what is wrong
        self._fence()
        self._write(self.layout.infra_compose, infra)
        if self.host.get(self.layout.database_env) is None:  # the container exists: write it back
            self._write_database_env()
        extensions = ", ".join(f"{n} {facts.extensions[n]}" for n in section.extensions)
        return (
            f"{said}; {extensions}; role {section.user}'s password is the env file's "
            "(no readiness wait, extension creation or login container needed)"
        )

    def _full_infrastructure(self, infra: str) -> str:
        # Before anything is written or created: the port may have been taken since validate.
        self._refuse_taken_ports()
        self._fence()
        # A full check that fails half-way must not leave an earlier record behind.
        self.host.run(["rm", "-f", str(self.layout.infra_verified)], check=False)
        self._write(self.layout.infra_compose, infra)
        database = self._database()
        if database is not None:  # Compose reads every service's env file, whichever it starts
            self._write_database_env()
        proxy = ensure_network(self.config, self.docker) + self._refresh_proxy()
        guard = self._ensure_guard()
        if database is None:
            self.docker.compose(
                self.names.infra_project,
                self.layout.infra_compose,
                ["create", "--no-recreate", "proxy"],
            )
            return proxy + guard + ("external database" if self.config.database else "no database")
        assert self.config.database is not None  # noqa: S101
        self.docker.compose_up(
            self.names.infra_project,
            self.layout.infra_compose,
            services=["db"],
            wait_timeout=self.config.database.ready_timeout,
        )
        versions = database.ensure_extensions(self.config.database.extensions)
        extensions = ", ".join(f"{k} {v}" for k, v in versions.items())
        return f"{proxy}{guard}database ready; {extensions}; {self.verify_credentials()}"

    def _write_database_env(self) -> None:
        """The database container's env file, written when the container is created and then
        left as it is: its POSTGRES_* values count only when the data directory is created, and
        Compose recreates a container whose env file changed, which would restart PostgreSQL
        under the live version for a password the database does not use (``verify_credentials``
        and ``rotate_password`` are for changing it)."""
        if (
            self.docker.container(self.names.database) is not None
            and self.host.get(self.layout.database_env) is not None
        ):
            return
        self._write(
            self.layout.database_env,
            compose_env_file_text(database_env(self.config), source="database env"),
        )

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

    def verify_credentials(self) -> str:
        """The database accepts the app's credentials as the env file gives them now. They are
        checked as the app connects (over the network, with the password) because the database
        container's own socket trusts any: a password changed in the env file (a re-cloned
        checkout, a regenerated file) passes the extensions and migrations and would otherwise
        only show as the new version never becoming healthy. Refused before any slot starts."""
        database, section = self._database(), self.config.database
        if database is None or section is None:
            return "no database run by shipyard"
        error = self._login_error(database)
        if error is None:
            return f"role {section.user} logs in with the env file's password"
        key, environment = section.password_env, self.config.environment.name
        env_file = self.config.environment.env_file
        where = env_file.name if env_file is not None else "the env file"
        if password_refused(error):
            raise DatabaseError(
                f"the database refuses the password of role {section.user!r}: the role was "
                f"created with another password than the one {key!r} (database.password_env) "
                f"holds in {where} now, so the new version could not connect; no slot was "
                f"started ({error})",
                hint=f"if {key!r} changed by mistake (a re-cloned checkout, a regenerated env "
                f"file), restore its old value in {where}; to change the database's password, "
                f"run `shipyard db rotate-password {environment}`: it gives role "
                f"{section.user!r} the value {key!r} holds now and redeploys the live version "
                "with it",
            )
        raise DatabaseError(
            f"the app's credentials from {where} do not log in to the database (role "
            f"{section.user!r}, database {section.name!r}): {error}",
            hint="the new version could not connect either; no slot was started",
        )

    def _refresh_proxy(self) -> str:
        """Recreate a running proxy whose definition changed (its ports, image or volumes: a new
        ``proxy.http_port`` or domains) so the change applies; it does not answer for the second
        it takes to restart. Its routing config changes never need this (the admin API loads it)."""
        proxy = self.docker.container(self.names.proxy)
        if proxy is None:
            return ""
        wanted = self.docker.compose_config_hash(
            self.names.infra_project, self.layout.infra_compose, "proxy"
        )
        if proxy.labels.get("com.docker.compose.config-hash") == wanted:
            return ""
        self._warn(PROXY_RECREATED)
        self._fence()
        self.docker.compose_up(
            self.names.infra_project, self.layout.infra_compose, services=["proxy"], wait_timeout=60
        )
        return "proxy recreated (its ports, image or volumes changed); "

    def _ensure_guard(self) -> str:
        """The guard running as configured (created, or recreated when its definition changed)."""
        if not self.config.deploy.guard_image:
            return ""
        if self.docker_socket is None:
            self._warn(
                f"no guard on {self.host.name}: its Docker engine is not reached through a Unix "
                "socket, so a live container stopped outside shipyard stays stopped until the "
                "next deploy or `shipyard repair`"
            )
            return ""
        before = self.docker.container(self.names.guard)
        self.docker.compose_up(
            self.names.infra_project, self.layout.infra_compose, services=["guard"]
        )
        return "" if before is not None and before.running else "guard started; "

    def proxy_definition_changed(self) -> bool:
        """Whether the running proxy was created from another definition than the config renders
        now (read from the compose file on the host; changes nothing)."""
        proxy = self.docker.container(self.names.proxy)
        written = self.host.get(self.layout.infra_compose)
        if proxy is None or written is None:
            return False
        wanted = self._infra()["services"]["proxy"]
        before = YAML(typ="safe", pure=True).load(written.decode())
        return bool(before.get("services", {}).get("proxy") != wanted)

    def pending_migrations(self, current: int | None) -> list[int]:
        """Migration versions in the source newer than ``current``."""
        section = self.config.database
        if section is None or section.migrations is None:
            return []
        files = local_migration_versions(self.config.resolve(section.migrations.path))
        return [v for v in files if current is None or v > current]

    def applied_migrations(self) -> MigrationState:
        """What the environment's database has applied: nothing when it was never created;
        ``DatabaseError`` when it cannot be asked (not run by shipyard, or stopped)."""
        database = self._database()
        if database is None:
            raise DatabaseError(
                "this environment's database is not run by shipyard, so it cannot be asked which "
                "migrations it has applied",
                hint="lint offline: `shipyard migrations lint ENV --since VERSION` (the version "
                "applied there), or `--all`",
            )
        try:
            info = self.docker.container(self.names.database)
        except HostUnreachable as exc:
            raise HostUnreachable(
                exc.message,
                hint=f"{exc.hint + '; ' if exc.hint else ''}or lint offline: `shipyard "
                "migrations lint ENV --since VERSION` (the version applied there), or `--all`",
            ) from exc
        if info is None:
            return MigrationState(None, False)
        if not info.running:
            raise DatabaseError(
                f"database container {info.name} is {info.status}: it cannot say which migrations "
                "it has applied",
                hint="start it (`shipyard deploy ENV`), or lint offline: `shipyard migrations "
                "lint ENV --since VERSION`, or `--all`",
            )
        return database.migration_state()

    def _snapshots(self) -> SnapshotStore | None:
        section = self.config.database
        if section is None or not managed_database(self.config):
            return None
        directory = (
            PurePosixPath(section.snapshots.dir) if section.snapshots.dir else self.layout.snapshots
        )
        return SnapshotStore(
            self.docker,
            self.names.database,
            section,
            directory,
            app=self.config.app.name,
            environment=self.config.environment.name,
        )

    def plan_migrations(self) -> MigrationPlan:
        """Pending migrations, their lint findings, and whether to snapshot first. Changes nothing."""
        database = self._database()
        section = self.config.database
        if section is None or section.migrations is None:
            return MigrationPlan(None, (), snapshot_skip="no migrations configured")
        if database is None:
            raise ShipyardError(
                "migrations against an external database are not supported by this version"
            )
        before = self._planned = database.migration_state()
        if before.dirty:
            files = local_migration_files(self.config.resolve(section.migrations.path))
            name = (
                files[before.version].name
                if before.version in files
                else f"version {before.version}"
            )
            raise MigrationError(
                f"the schema is dirty at version {before.version} ({name}): a previous migration failed half-way",
                hint=(
                    f"inspect what {name} changed and undo or complete it by hand (or restore a "
                    "snapshot: `shipyard snapshot list ENV`), then mark the version clean with "
                    f"`migrate force {before.version}` (completed) or the version before it (undone), "
                    "and deploy again"
                ),
            )
        files = local_migration_files(self.config.resolve(section.migrations.path))
        pending = [files[v] for v in sorted(files) if before.version is None or v > before.version]
        findings: tuple[Finding, ...] = ()
        if pending and section.migrations.lint != "off":
            findings = tuple(lint_files(pending))
            if findings and section.migrations.lint == "block":
                raise MigrationLintFailed(
                    f"{len(findings)} unsafe statement(s) in pending migrations:\n"
                    + "\n".join(f"  {f}" for f in findings),
                    hint="rewrite them the safe way shown, or set database.migrations.lint: warn",
                )
        if not pending:
            skip = "no pending migrations"
        elif not section.snapshots.enabled:
            skip = "database.snapshots.enabled is false"
        else:
            skip = ""
        return MigrationPlan(
            before.version,
            tuple(p.name for p in pending),
            findings,
            snapshot=not skip,
            snapshot_skip=skip,
        )

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
            pruned = store.prune(store.plan_prune(self._protected_snapshots(release)))
        except ShipyardError as exc:  # retention runs again after the next snapshot
            self._warn(f"pruning old snapshots failed: {exc.message}")
        else:
            if pruned:
                self._warn(f"pruned {len(pruned)} old snapshot(s): {', '.join(pruned)}", note=True)
        return snapshot

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

    def _protected_snapshots(self, *extra: Release) -> set[str]:
        releases = [*self.ctx.store.releases(), *extra]
        return {r.snapshot for r in releases if r.snapshot} | {r.id for r in releases}

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

    # -- password rotation ----------------------------------------------------------------------------
    def rotate_password(self, rotation: PasswordRotation, release: Release) -> str:
        """Give the database role the password the env file holds now (unless it logs in with it
        already) and every retained release's saved environment the matching database URL, so
        ``release`` starts with it in ``release.slot`` and a rollback finds working credentials.
        The password goes over the container's local socket as a SCRAM verifier, on stdin.
        ``rotation`` records each change just before it is made, for ``restore_password``."""
        database, section = self._database(), self.config.database
        if database is None or section is None:
            raise DatabaseError("this environment has no database run by shipyard")
        done = []
        refused = self._login_error(database)
        if refused is None:
            done.append(f"role {section.user} logs in with the env file's password already")
        elif not password_refused(refused):  # a new password would not help
            raise DatabaseError(
                f"the app's credentials do not log in to the database for another reason than "
                f"the password (role {section.user!r}, database {section.name!r}): {refused}",
                hint="nothing was changed",
            )
        else:
            previous = database.role_password()
            verifier = scram_verifier(self.config.secrets.get(section.password_env) or "")
            for value in (previous, verifier):
                if value:
                    self.config.masker.add(value)
            rotation.previous, rotation.altered = previous, True
            self._fence()
            database.set_role_password(verifier)
            error = self._login_error(database)
            if error is not None:
                raise DatabaseError(
                    f"role {section.user!r} still cannot log in after its password was changed: "
                    f"{error}"
                )
            done.append(f"role {section.user} has the password {section.password_env!r} holds")
        values = {
            section.url_env: database_url(self.config, self.names),
            section.password_env: self.config.secrets.get(section.password_env) or "",
        }
        refreshed = 0
        for kept in self.ctx.store.releases():
            path = self.layout.release_env(kept.id)
            text = self.host.get(path)
            if text is None:  # started with the env file's values, which have the password
                continue
            rotation.files[str(path)] = text
            self._fence()
            self._write(path, with_values(text.decode(), values, source=str(path)))
            refreshed += 1
        done.append(f"the database URL of {refreshed} retained release(s) renewed")
        kept_container = self.slot_container(release.slot)
        if (
            kept_container is not None
            and kept_container.name != self.names.live
            and kept_container.labels.get(f"{LABEL}.release") == release.id
        ):
            # Kept stopped with the environment it was created with; started again, it would
            # log in with the old password.
            self._fence()
            self.docker.compose_down(self.names.slot(release.slot))
            done.append(f"removed {kept_container.name}: it had the old database URL")
        return "; ".join(done)

    def restore_password(self, rotation: PasswordRotation) -> str:
        """Undo what ``rotation`` records: the saved environments as they were, and the role's
        previous password (its verifier as it was stored)."""
        done = []
        for path, text in rotation.files.items():
            self._fence()
            self.host.put(PurePosixPath(path), text, mode=0o600)
        if rotation.files:
            done.append(f"{len(rotation.files)} saved environment(s) as they were")
        database = self._database()
        if rotation.altered and database is not None:
            self._fence()
            database.set_role_password(rotation.previous)
            done.append("the database role has its previous password again")
        return "; ".join(done) or "nothing had changed"

    def start_slot(self, slot: str, release: Release) -> str:
        container = self.names.slot(slot)
        kept = self.slot_container(slot)
        if kept is not None and kept.name == self.names.live:
            raise DeployFailed("start", f"slot {slot} is the live slot; refusing to replace it")
        self._fence()
        if kept is not None and kept.labels.get(f"{LABEL}.release") == release.id:
            # The release's own container, kept stopped for exactly this: start it as it was.
            try:
                self.docker.start(container)
            except ShipyardError as exc:
                raise DeployFailed("start", f"slot {slot} did not start: {exc.message}") from exc
            return f"{container} restarted ({release.image})"
        # A release runs with the environment it was first deployed with: a rollback brings back
        # exactly that, not whatever the config says today.
        saved = self.layout.release_env(release.id)
        env = self.host.get(saved)
        if env is not None:
            env = as_compose_env(env.decode(), source=str(saved)).encode()
        else:
            env = compose_env_file_text(app_env(self.config, self.names), source="app env").encode()
            self.host.put(saved, env, mode=0o600)
        self.host.put(self.layout.slot_env(slot), env, mode=0o600)
        compose = render_slot(
            self.config,
            self.names,
            self.layout,
            slot,
            image=release.image,
            release=release.id,
            version=release.version,
            commit=release.commit,
            deployment=self.ctx.deployment_id,
        )
        self._write(self.layout.slot_compose(slot), to_yaml(compose))
        self._fence()
        try:
            self.docker.compose_up(
                self.names.slot(slot),
                self.layout.slot_compose(slot),
                force_recreate=True,
                wait_timeout=60,
            )
        except ShipyardError as exc:
            info = self.docker.container(container)
            ended = (
                f"\n  {container} {describe_exit(info, self.docker.exit_codes(info))}"
                if info is not None and (not info.running or info.restart_count)
                else ""
            )
            logs = self.docker.logs(container, tail=20)
            raise DeployFailed(
                "start",
                f"slot {slot} did not start: {exc.message}{ended}\n  app log (last 20 lines):\n"
                f"{_indent(logs)}",
                hint=self._gate_hint(),
            ) from exc
        return f"{self.names.slot(slot)} running {release.image}"

    def remove_slot(self, slot: str) -> None:
        """Remove the candidate this operation started in ``slot``: never a container that
        carries a name the proxy routes to, nor one another operation created (a kept release's
        container is stopped instead)."""
        self.park(slot, remove_if_from=self.ctx.deployment_id)

    def park(self, slot: str, *, remove_if_from: str | None = None) -> str:
        """Take ``slot``'s container out of service: removed when operation ``remove_if_from``
        created it, else drained and stopped (kept for rollback). Refused while the proxy routes
        to it."""
        info = self.slot_container(slot)
        if info is None:
            return f"slot {slot} has no container"
        if info.name == self.names.live:
            raise ShipyardError(
                f"refusing to take {info.name} out of service: the proxy routes to it"
            )
        if remove_if_from is not None and info.labels.get(f"{LABEL}.deployment") == remove_if_from:
            self._fence()
            self.docker.compose_down(self.names.slot(slot))
            return f"{info.name} removed"
        if not info.running:
            return f"{info.name} was stopped already"
        return self.retire(slot)

    def _target(self, slot: str, info: ContainerInfo | None = None) -> Target:
        """What the checks look at in ``slot`` (``info``: its container, already inspected)."""
        info = info or self.slot_container(slot)
        if info is None:
            raise ShipyardError(f"slot {slot} has no container")
        port = self._published(info, self.config.app.port)
        section = self.config.database
        managed = self._database() is not None
        return Target(
            base_url=f"http://127.0.0.1:{port}",
            port=port,
            container=info.name,
            docker=self.docker,
            database_container=self.names.database if managed else None,
            database_user=section.user if section else None,
            database_name=section.name if section else None,
        )

    def _gate_hint(self) -> str:
        fix = "fix the app or its config and deploy again"
        if self.docker.container(self.names.live) is None:
            return fix  # nothing served before (a first deploy says what it left)
        return f"the previous version kept serving; {fix}"

    def gate(self, slot: str) -> str:
        """``slot`` passes its health checks ``health.passes`` rounds in a row (see
        ``shipyard.health.wait_healthy`` for the pace); it fails at once when its container
        exits or restarts, after ``health.unhealthy_grace`` when it keeps answering unhealthy,
        else after ``health.start_timeout``."""
        container = self.names.slot(slot)
        first = self.slot_container(slot)
        try:
            target = self._target(slot, first)
        except ShipyardError as exc:  # it exited before its port could be reached
            info = self.docker.container(container)
            if info is not None and info.running and not info.restart_count:
                state = exc.message  # it runs, yet publishes no port
            else:
                ended = describe_exit(info, self.docker.exit_codes(info) if info else [])
                state = f"{container} {ended}"
            raise DeployFailed(
                "health",
                f"slot {slot} is not serving: {state}\n  app log (last 20 lines):\n"
                f"{_indent(self.docker.logs(container, tail=20))}",
                hint=self._gate_hint(),
            ) from exc
        container = target.container
        restarts = first.restart_count if first is not None else 0

        def alive() -> str | None:
            info = self.docker.container(container)
            if info is None:
                return f"container {container} disappeared"
            if not info.running or info.restart_count > restarts:
                return f"container {container} {describe_exit(info, self.docker.exit_codes(info))}"
            return None

        health = self.config.health
        result = wait_healthy(build_checks(health), target, health, alive=alive)
        if not result.ok:
            answers = (
                "\n".join(f"    {r.name}: {r.detail}" for r in result.last) or "    (no answer)"
            )
            logs = self.docker.logs(container, tail=20)
            raise DeployFailed(
                "health",
                f"slot {slot} never became healthy: {result.reason}\n  last answers:\n{answers}\n"
                f"  app log:\n{_indent(logs)}",
                hint=self._gate_hint(),
            )
        return f"{health.passes} consecutive passes after {result.rounds} round(s)"

    def caddy_config(self) -> dict[str, Any]:
        return render_caddy(self.config.proxy, self.names.routed, self.config.app.port)

    def _ensure_proxy(self) -> CaddyAdmin:
        """The proxy running with the rendered config: written to the host and loaded only when
        the running config differs (a switch then costs one inspection and one admin request)."""
        config = self.caddy_config()
        proxy = self.docker.container(self.names.proxy)
        if proxy is None or not proxy.running:
            taken = taken_ports(self.config, self.host)
            if taken:  # taken since the infrastructure phase: this operation's changes are undone
                raise ShipyardError("the proxy cannot start: " + "; ".join(taken))
            self._write(self.layout.caddy_config, json.dumps(config, indent=2))
            self.docker.compose_up(
                self.names.infra_project,
                self.layout.infra_compose,
                services=["proxy"],
                wait_timeout=60,
            )
            proxy = None
        admin = self.admin(proxy)
        running = _poll(admin.config_if_ready, seconds=30, what="the proxy's admin API")
        if running != config:
            self._write(self.layout.caddy_config, json.dumps(config, indent=2))
            admin.load(config)
        return admin

    def switch(self, slot: str) -> str:
        """Make ``slot`` live (see shipyard.proxy): the live container takes the switching name
        (the proxy's second choice: it alone still serves), ``slot``'s container the live name,
        and the old one its slot name back. No client sees the old version after the new one,
        and a switch interrupted between two renames still leaves the site served (and is
        finished or undone by the next operation, which calls this again). The lock is checked
        once before the renames: they follow each other at once."""
        self._ensure_proxy()
        names = self.names
        live, switching = names.live, names.switching
        found = self.docker.containers_named([live, switching, names.slot(slot)])
        current, left = found[live], found[switching]
        target = next(
            (
                info
                for info in (found[names.slot(slot)], current, left)
                if info is not None and info.labels.get(f"{LABEL}.slot") == slot
            ),
            None,
        )
        if target is None:
            raise ShipyardError(f"slot {slot} has no container to switch to")
        if current is not None and left is not None:
            # Cut short after its second rename: the old container takes its slot name back.
            self._fence()
            self.docker.rename(switching, self._slot_name(left))
            if target.id == left.id:
                target = replace(left, name=self._slot_name(left))
            left = None
        if target.name == live:
            return f"{live} is already slot {slot}"
        self._fence()
        if current is not None:
            self.docker.rename(live, switching)
        previous = current or left
        self.docker.rename(target.name, live)
        if previous is not None and previous.id != target.id:
            self.docker.rename(switching, self._slot_name(previous))
        self._switched_at = time.monotonic()
        return f"{live} → slot {slot} ({target.labels.get(f'{LABEL}.version', '?')})"

    def _slot_name(self, info: ContainerInfo) -> str:
        return self.names.slot(info.labels.get(f"{LABEL}.slot", "old"))

    def _settle_switching(self) -> None:
        """A container left with the switching name while another carries the live name (a
        switch cut short after its second rename) gets its slot name back."""
        left = self.docker.container(self.names.switching)
        if left is not None:
            self._fence()
            self.docker.rename(left.name, self._slot_name(left))

    def switch_back(self, slot: str) -> str:
        """After a failed watch (or verify): make ``slot``, the version the switch replaced,
        live again. Stopped right after the switch (``deploy.old_version: stop``), it is started
        and must pass the health gate before the proxy goes back to it; until then the new
        version keeps serving."""
        info = self.slot_container(slot)
        if info is None:
            raise ShipyardError(f"slot {slot} has no container to switch back to")
        if info.running:
            return self.switch(slot)
        self._fence()
        self.docker.start(info.name)
        gated = self.gate(slot)
        return f"{info.name} started, health-gated ({gated}); {self.switch(slot)}"

    def endpoints(self) -> list[Endpoint]:
        """The proxy as users reach it (each domain over HTTPS, or plain HTTP), connected to
        its port on the host rather than through public DNS (``shipyard.proxy.endpoints``)."""
        proxy = self.config.proxy
        port = proxy.https_port if proxy.domains else proxy.http_port
        host = None if isinstance(self.host, LocalHost) else self.host.name
        return endpoints(proxy, host, self.host.tunnel(port))

    def trust(self) -> ssl.SSLContext:
        """The system's trust store, plus the proxy's internal root with ``proxy.tls: internal``
        (read from its admin API; absent while the proxy does not answer, so nothing it
        presents is trusted until it does)."""
        proxy = self.config.proxy
        if not (proxy.domains and proxy.tls == "internal"):
            return trust()
        try:
            return trust(self.admin().local_root())
        except ShipyardError:
            return trust()

    def verify(self, release: Release) -> str:
        """``deploy.verify_path`` through the proxy, at every endpoint users reach, must report
        the deployed commit: waits up to ``proxy.certificate_timeout`` for a trusted
        certificate (HTTPS), then ``deploy.verify_timeout`` for the commit."""
        path = self.config.deploy.verify_path
        if not path:
            return "skipped (deploy.verify_path is empty)"
        return "; ".join(self._verify_at(endpoint, path, release) for endpoint in self.endpoints())

    def _verify_at(self, endpoint: Endpoint, path: str, release: Release) -> str:
        proxy, deploy = self.config.proxy, self.config.deploy
        https = endpoint.scheme == "https"
        deadline = time.monotonic() + (
            proxy.certificate_timeout if https else deploy.verify_timeout
        )
        answered = False
        verify = self.trust()
        while True:
            answer = probe(endpoint, path, verify=verify, timeout=5)
            if reports_commit(answer, release.commit):
                return f"{endpoint.describe(path)} reports {release.commit[:7]}"
            if answer.status is not None and not answered:
                answered = True  # the certificate is there: the commit must follow soon
                deadline = time.monotonic() + deploy.verify_timeout
            if time.monotonic() >= deadline:
                raise self._unverified(answer, release)
            if answer.tls:
                verify = self.trust()  # the internal root appears once the proxy made it
            time.sleep(0.5)

    def _unverified(self, answer: Answer, release: Release) -> DeployFailed:
        endpoint, proxy = answer.endpoint, self.config.proxy
        where = endpoint.describe(answer.path)
        if answer.status is not None:
            return DeployFailed(
                "verify",
                f"{where} does not report commit {release.commit[:7]}: {answer.describe()}\n"
                "  deploy.verify_path must be answered by the app itself (2xx, no redirect) "
                "with a body naming the commit it was built from",
            )
        if not answer.tls:
            return DeployFailed("verify", f"{where}: the proxy does not answer: {answer.error}")
        domain = endpoint.server_name
        logged = self._caddy_errors(domain)
        if proxy.tls == "internal":
            why = (
                f"the proxy's internal CA signs {domain}'s certificate: `docker logs "
                f"{self.names.proxy}` says why it did not"
            )
        else:
            why = (
                f"Caddy obtains {domain}'s certificate by ACME: {domain} must resolve to this host "
                f"and ports 80 and 443 be reachable from the internet (`docker logs "
                f"{self.names.proxy}` shows its attempts); a private setup or a test uses "
                "proxy.tls: internal"
            )
        # The explanation is part of the message: a failure after the switch gets the rollback's
        # hint instead of this phase's.
        return DeployFailed(
            "verify",
            f"no trusted certificate for {domain} within {proxy.certificate_timeout:g}s "
            f"(proxy.certificate_timeout, proxy.tls: {proxy.tls}) at {where}: {answer.error}"
            + (f"\n  the proxy logged: {logged}" if logged else "")
            + f"\n  {why}",
        )

    def _caddy_errors(self, domain: str) -> str:
        """The proxy's last logged error about ``domain`` (why a certificate is missing)."""
        try:
            logs = self.docker.logs(self.names.proxy, tail=200)
        except ShipyardError:
            return ""
        found = [
            line
            for line in logs.splitlines()
            if domain in line and '"level":"error"' in line.replace(" ", "")
        ]
        return found[-1][:500] if found else ""

    def watch(self, slot: str, seconds: float) -> str:
        """After the switch: health checks and the proxy's 5xx rate for ``seconds``
        (``deploy.watch``, or ``deploy.rollback_watch`` for a rollback)."""
        section = self.config.deploy
        if seconds <= 0:
            return "skipped (no watch window)"
        admin = self.admin()
        baseline = admin.traffic()
        checks = build_checks(self.config.health)
        target = self._target(slot)
        deadline = time.monotonic() + seconds
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
        return f"healthy for {seconds:g}s; {seen.total} request(s), {seen.errors} 5xx"

    def retire(self, slot: str) -> str:
        """Drain the old slot (no new requests reach it; wait for its in-flight ones, no longer
        than ``deploy.drain_timeout``), then stop it."""
        info = self.slot_container(slot)
        if info is None or not info.running:
            return f"slot {slot} was not running"
        if info.name == self.names.live:
            raise ShipyardError(f"refusing to stop {info.name}: the proxy routes to it")
        container = info.name
        address = info.addresses.get(self.names.network, container)
        drained = self._drain(f"{address}:{self.config.app.port}")
        self._fence()
        self.docker.stop(container, timeout=self.config.app.stop_grace_period)
        left = f", {drained} request(s) still in flight at the drain timeout" if drained else ""
        return f"{container} drained and stopped (kept for rollback){left}"

    def _drain(
        self,
        upstream: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> int:
        """Wait until the proxy has no request in flight to ``upstream`` (Caddy's
        ``/reverse_proxy/upstreams``), for up to ``deploy.drain_timeout``: asked at once, then
        after pauses doubling from 20 ms up to 250 ms. Returns the requests still in flight."""
        admin = self.admin()
        # Right after a switch (``deploy.old_version: stop``) the proxy may still hold the old
        # container's address for one lookup: no request is counted in flight before it looked
        # the live name up again. Long after it (the watch ran in between) this waits nothing.
        if self._switched_at is not None:
            if (early := self._switched_at + 2 * LOOKUP_REFRESH_S - clock()) > 0:
                sleep(early)
        counts: list[int] = []

        def in_flight() -> int:
            counts.append(admin.in_flight(upstream))
            return counts[-1]

        wait_until(
            in_flight,
            timeout=self.config.deploy.drain_timeout,
            interval=_BACK_OFF,
            clock=Clock(clock, sleep),
            done=lambda count: count == 0,
        )
        return counts[-1]

    def schema_version(self) -> int | None:
        database = self._database()
        return database.migration_state().version if database is not None else None

    def prune(self, dropped: list[Release], kept: list[Release]) -> None:
        """Forget what no retained release needs: the dropped releases' images, every file kept
        for a release that is no longer retained (env files, migration copies), and orphaned
        temporary files of interrupted writes. (Deployment logs: ``events.DeploymentLog``.)"""
        in_use = {r.image_id for r in kept} | {r.image for r in kept}
        for release in dropped:
            if release.image_id not in in_use and release.image not in in_use:
                self.docker.remove_image(release.image)
        retained = {r.id for r in kept}
        for directory, suffix in (
            (self.layout.releases, ".env"),
            (self.layout.migration_copies, ""),
        ):
            for name in self._listing(directory):
                if name.removesuffix(suffix) not in retained and name.endswith(suffix):
                    self.host.run(["rm", "-rf", str(directory / name)], check=False)
        self.host.run(
            # A write is a temporary ".<name>.<random>" file renamed over its target; one whose
            # writer was killed stays behind.
            [
                "find",
                str(self.layout.root),
                "-type",
                "f",
                "-name",
                ".*.*",
                "-mmin",
                "+10",
                "-delete",
            ],
            check=False,
        )

    def _listing(self, directory: PurePosixPath) -> list[str]:
        result = self.host.run(["ls", "-1", "-A", str(directory)], check=False)
        return result.stdout.split() if result.ok else []

    def leftovers(self) -> list[str]:
        """What of the environment's stack exists on the host, the app's slots aside."""
        found = [
            f"{what} container {name}"
            for what, name in (
                ("database", self.names.database),
                ("proxy", self.names.proxy),
                ("guard", self.names.guard),
            )
            if self.docker.container(name) is not None
        ]
        if self.names.network in self.docker.networks():
            found.append(f"network {self.names.network}")
        volumes = set(self.docker.volumes())
        found += [f"volume {v}" for v in self.names.volumes.values() if v in volumes]
        return found

    def discard(self, release: Release, *, image: bool) -> str:
        """Forget a release that never went live (a failed or interrupted deploy): its env file,
        its migration copy and, when that operation built it (``image``), its image — unless a
        retained release uses it."""
        kept = self.ctx.store.releases()
        if any(r.id == release.id for r in kept):
            return f"release {release.id} is retained"
        self._fence()
        self.host.run(["rm", "-f", str(self.layout.release_env(release.id))], check=False)
        if self.docker.container(self.names.migrate(release.id)) is None:
            # (while its golang-migrate container is kept, the files it ran are read again)
            self.host.run(["rm", "-rf", str(self.layout.migrations(release.id))], check=False)
        in_use = {r.image_id for r in kept} | {r.image for r in kept}
        if image and release.image not in in_use and release.image_id not in in_use:
            self.docker.remove_image(release.image)  # kept while a container uses it
            return f"removed {release.image} and the files of release {release.id}"
        return f"removed the files of release {release.id}"

    # -- repair ----------------------------------------------------------------------------------------
    def recover(self) -> list[str]:
        """What interrupted operations left on the host: read how their golang-migrate
        containers ended (waiting for a running one), make the schema clean where that is safe,
        and remove them; remove snapshot dumps that were cut short."""
        database, section = self._database(), self.config.database
        if database is None or section is None:
            return []
        snapshots = self._snapshots()
        found = [
            f"removed {name}: a snapshot dump cut short"
            for name in (snapshots.remove_partial() if snapshots is not None else [])
        ]
        labels = self.names.labels(role="migrate")
        for info in self.docker.labelled(labels):
            deployment = info.labels.get(f"{LABEL}.deployment", "")
            copy = self.layout.migrations(deployment)
            files = {}
            for name in self._listing(copy):
                version, _, rest = name.partition("_")
                if version.isdigit() and rest.endswith(".up.sql"):
                    files[int(version)] = (self.host.get(copy / name) or b"").decode()
            self._fence()
            timeout = section.migrations.timeout if section.migrations else 600
            outcome = database.migration_outcome(info.name, files, timeout=timeout)
            if outcome is not None:
                found.append(outcome)
        return found

    def serve(self, slot: str) -> str:
        """Make ``slot``'s container the only one the proxy routes to: started and health-gated
        first unless it is already the one serving."""
        info = self.slot_container(slot)
        if info is None:
            raise ShipyardError(f"slot {slot} has no container")
        if info.running and info.name == self.names.live:
            return f"{info.name} (slot {slot}) serves"
        done = ""
        if not info.running:
            self._fence()
            self.docker.start(info.name)
            done = "started, "
        done += f"health-gated ({self.gate(slot)}), "
        self.switch(slot)
        return f"slot {slot} {done}serves as {self.names.live}"

    def tidy(self, current: str | None) -> list[str]:
        """With no operation in progress: a live container stopped outside shipyard is started
        again, a switch cut short between its renames is finished (the slot the state names, if it
        runs, takes the live name), and an app container running beside the live one (a candidate
        of an interrupted operation) is stopped. ``current``: the slot the state says is live."""
        done: list[str] = []
        live = self.docker.container(self.names.live)
        if live is not None:
            self._settle_switching()
        if live is not None and not live.running:
            self._fence()
            self.docker.start(live.name)
            slot = live.labels.get(f"{LABEL}.slot", "?")
            done.append(f"started {live.name} (slot {slot}): it had been stopped outside shipyard")
        running = self._running_slots()
        if live is None and running:
            slots = [info.labels.get(f"{LABEL}.slot", "") for info in running]
            slot = current if current in slots else slots[-1]
            self.switch(slot)
            done.append(f"finished a switch cut short: slot {slot} serves as {self.names.live}")
            running = self._running_slots()  # renamed by the switch
        for info in running:
            if info.name != self.names.live:
                slot = info.labels.get(f"{LABEL}.slot", "")
                done.append(f"{self.park(slot)}: it ran beside the live version")
        return done

    def live_release(self) -> Release | None:
        """The release the container carrying the live name runs, read from its labels."""
        info = self.docker.container(self.names.live)
        if info is None:
            return None
        labels = info.labels
        known = self.ctx.store.release(labels.get(f"{LABEL}.release", ""))
        slot = labels.get(f"{LABEL}.slot", "blue")
        if known is not None:
            return replace(known, slot=slot)
        image = self.docker.container_image(info.name)
        return Release(
            id=labels.get(f"{LABEL}.release", info.id[:12]),
            version=labels.get(f"{LABEL}.version", "unknown"),
            commit=labels.get(f"{LABEL}.commit", "unknown"),
            image=image,
            image_id=info.image_id,
            slot=slot,
            migration_version=None,
            created_at=now_iso(),
            deployed_by="unknown",
        )


class DockerProvider:
    """Deploys to one Docker host through ``docker`` and ``docker compose``."""

    name = "docker"

    def __init__(self, host: Host) -> None:
        self.host = host

    def steps(self, ctx: OperationContext) -> DockerSteps:
        return DockerSteps(ctx, self.host)

    def database(self, ctx: OperationContext) -> DatabaseOperations:
        """Snapshot operations (create, list, verify, restore, prune) on this host."""
        from shipyard.providers._database import DatabaseOperations  # noqa: PLC0415 — cycle

        return DatabaseOperations(self.steps(ctx))

    def migration_state(self, ctx: OperationContext) -> MigrationState:
        """The migrations the environment's database has applied (none before its first deploy)."""
        return self.steps(ctx).applied_migrations()

    def preflight(self, config: Config) -> str:
        """The host's engine, checked as every operation checks it first (``engine_ready``), and
        the proxy's ports (``PortInUse`` when another process or container holds one)."""
        docker = Docker(self.host)
        found = engine_ready(docker.info(), self.host.name)
        taken = taken_ports(config, self.host)
        if taken:
            raise PortInUse(taken)
        conflict = subnet_conflict(config, docker)
        if conflict is not None:
            raise conflict
        ports = " and ".join(str(port) for _, port in proxy_ports(config))
        found += f"; no other process or container holds port {ports} on {self.host.name}"
        if config.proxy.subnet is not None:
            found += f"; no other network on {self.host.name} overlaps proxy.subnet {config.proxy.subnet}"
        return found

    def provision(self, ctx: OperationContext) -> list[str]:
        return [self.steps(ctx).preflight()]

    def deploy(self, ctx: OperationContext, options: DeployOptions) -> DeployResult:
        return run_deploy(ctx, self.steps(ctx), options)

    def plan(self, ctx: OperationContext, options: DeployOptions) -> list[PlanStep]:
        """What a deploy would do, read from the config, the state and the engine; changes nothing."""
        steps, config, docker = self.steps(ctx), ctx.config, self.steps(ctx).docker
        allow_dirty = options.allow_dirty or config.deploy.allow_dirty
        validate(ctx, steps, allow_dirty=allow_dirty)
        plan: list[PlanStep] = []
        plan += _plan_lock_and_repair(ctx)
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
        db = docker.container(steps.names.database) if database is not None else None
        if database is not None and config.database is not None:
            if db is None or not db.running:
                extensions = ", ".join(config.database.extensions)
                plan.append(
                    PlanStep(
                        "infrastructure",
                        f"start {steps.names.database} ({config.database.image}); create extensions {extensions}",
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
        keep = config.deploy.keep_releases
        if len(releases) + 1 > keep:
            for dropped in releases[: len(releases) + 1 - keep]:
                plan.append(
                    PlanStep(
                        "prune",
                        f"forget release {dropped.version} ({dropped.id}), remove image {dropped.image}",
                    )
                )
        return plan

    def plan_rollback(self, ctx: OperationContext, options: RollbackOptions) -> list[PlanStep]:
        """What `rollback` would do: which release it brings back and why (``choose_rollback``,
        the rule `rollback` follows), then its steps; read from the state and the engine,
        changing nothing."""
        steps, config = self.steps(ctx), ctx.config
        plan = _plan_lock_and_repair(ctx)
        served = Served.read(ctx.store)
        current = served.current
        if current is None:
            raise StateError(
                f"nothing is deployed to {config.environment.name}: nothing to roll back"
            )
        live = next((r for r in served.releases if r.id == current.release_id), None)
        if options.why is not None and live is not None and live.version == options.to:
            plan.append(
                PlanStep("choose", f"nothing to do: {live.version} serves already, {options.why}")
            )
            return plan
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
        database = steps._database()
        db = steps.docker.container(steps.names.database) if database is not None else None
        if database is not None and db is not None and db.running:
            schema = database.migration_state().version
            if (
                schema is not None
                and target.migration_version is not None
                and schema > target.migration_version
            ):
                plan.append(
                    PlanStep(
                        "schema",
                        f"the schema is at version {schema}, newer than the "
                        f"{target.migration_version} that {target.version} shipped with: it "
                        "needs --yes (down-migrations are never run)",
                    )
                )
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
        return plan

    def app_logs(self, ctx: OperationContext, *, tail: int, since: str | None = None) -> str:
        """The live slot's log lines (with timestamps)."""
        steps = self.steps(ctx)
        return steps.docker.logs(steps.names.live, tail=tail, since=since, timestamps=True)

    def rollback(self, ctx: OperationContext, options: RollbackOptions) -> DeployResult:
        return run_rollback(ctx, self.steps(ctx), options)

    def repair(self, ctx: OperationContext, *, lock_wait: float = 0.0) -> str:
        return run_repair(ctx, self.steps(ctx), lock_wait=lock_wait)

    def rotate_password(self, ctx: OperationContext, options: RotateOptions) -> DeployResult:
        """Give the database the env file's password and redeploy the live release with it."""
        steps = self.steps(ctx)
        if steps._database() is None:
            external = ctx.config.database is not None  # DATABASE_URL is in the env file
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
            str(steps.layout.caddy_config): json.dumps(steps.caddy_config(), indent=2),
        }
        return files

    def health_check(self, ctx: OperationContext) -> Status:
        steps = self.steps(ctx)
        current = ctx.store.current()
        release = ctx.store.release(current.release_id) if current else None
        # Every container of the stack in one inspection: what the rest of the report reads.
        found = steps.docker.containers_named(_stack_containers(steps.names))
        containers = {
            name: _describe(info)
            for name, info in found.items()
            if info is not None or name != steps.names.switching  # there only mid-switch
        }
        upstreams: list[str] = []
        problems: list[str] = []
        proxy = found[steps.names.proxy]
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
        live_container = found[steps.names.live]
        live = live_container.labels.get(f"{LABEL}.slot") if live_container is not None else None
        if current and live != current.slot:
            problems.append(
                f"{steps.names.live} is slot {live or 'nobody'}, state says {current.slot}"
            )
        drift = "; ".join(problems) or None
        health, detail, probed = "not deployed", "", None
        trouble: list[str] = []
        if current:
            health, detail, probed = _proxy_health(steps)
            trouble += _serving_problems(steps, found, health, f"GET {probed} → {detail}")
        intent = _interrupted(ctx)
        interrupted = None
        if intent is not None:
            version = intent.release.version if intent.release else "a version not yet built"
            if not intent.started:
                then = "records it (it had not changed what serves)"
            elif intent.proven:
                then = f"finishes it ({version} stays)"
            else:
                then = "undoes it (the previous version serves alone)"
            interrupted = (
                f"{intent.action} {intent.deployment_id} of {version} by {intent.by} stopped at "
                f"step {intent.step!r} (since {intent.updated_at}); the next deploy, rollback or "
                f"`shipyard repair` {then}"
            )
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
            probed=probed,
            proxy_upstreams=upstreams,
            drift=drift,
            containers=containers,
            interrupted=interrupted,
            problems=trouble,
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
            steps.docker.compose_down(steps.names.infra_project, volumes=volumes)
            removed.append(steps.names.infra_project)
            if steps.names.network in steps.docker.networks():  # created by shipyard (proxy.subnet)
                result = steps.docker.remove_network(steps.names.network)
                if result.ok:
                    removed.append(f"network {steps.names.network}")
                else:
                    refusal = (result.stderr.strip().splitlines() or ["?"])[-1]
                    kept.append(f"network {steps.names.network}: docker refused: {refusal}")
            for image, why in _images_to_remove(ctx, steps.docker, images):
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


def _snapshot_files(store: SnapshotStore, owned: list[Snapshot]) -> SnapshotFiles:
    return SnapshotFiles(
        f"{store.host.name}:{store.directory}", len(owned), sum(s.size for s in owned)
    )


def _remove_state(store: StateStore, *, keep: str | None) -> None:
    """Remove the environment's state directory, or all of it but the entry ``keep``."""
    if keep is None:
        store.host.run(["rm", "-rf", str(store.root)])
        return
    listed = store.host.run(["ls", "-1", "-A", str(store.root)], check=False)
    others = [store.root / name for name in listed.stdout.split() if name != keep]
    if others:
        store.host.run(["rm", "-rf", *map(str, others)])


def infra_still_verified(
    record: object, infra: str, found: dict[str, ContainerInfo | None], *, network: str
) -> bool:
    """Whether the last full infrastructure check (``record``, as ``_remember_infrastructure``
    wrote it) still holds for the definition ``infra`` and the containers ``found`` now (role →
    inspected container, ``None``: missing): the same definition, and each container running,
    healthy, on ``network`` and the one verified — the proxy may be another one created from
    the same definition (Compose's config hash), as the switch starts it when it is missing."""
    if not isinstance(record, dict):
        return False
    verified = record.get("containers")
    if (
        record.get("definition") != hashlib.sha256(infra.encode()).hexdigest()
        or not isinstance(verified, dict)
        or set(verified) != set(found)
    ):
        return False
    return all(
        _still_verified(role, info, verified[role], record.get("proxy_config_hash"), network)
        for role, info in found.items()
    )


def _still_verified(
    role: str, info: ContainerInfo | None, verified_id: object, proxy_hash: object, network: str
) -> bool:
    if info is None or not info.running or info.health not in (None, "healthy"):
        return False
    if role != "guard" and network not in info.addresses:
        return False
    if info.id == verified_id:
        return True
    return (
        role == "proxy"
        and bool(proxy_hash)
        and info.labels.get("com.docker.compose.config-hash") == proxy_hash
    )


def _schema_at(version: int | None, database: ContainerInfo | None) -> str:
    if version is not None:
        return f"schema at version {version}"
    if database is not None and not database.running:
        return f"database container {database.name} is {database.status}: its schema is not known"
    return "empty database, no migrations applied"


def describe_exit(info: ContainerInfo | None, exit_codes: list[int]) -> str:
    """What became of a container whose process no longer serves, from its state and the exit
    codes of its ``die`` events (a running container's own exit code is reset to 0 on every
    start, so it is never taken for one)."""
    if info is None:
        return "is gone"
    code = exit_codes[-1] if exit_codes else info.exit_code if info.exit_code_known else None
    if code == 0:
        what = "exited with code 0: its server process ended (it returned instead of serving)"
    elif code is not None:
        what = f"exited with code {code}"
    else:
        what = "stopped: its process ended"
    if info.restart_count or info.status == "restarting":
        what += (
            f"; its restart policy started it again {info.restart_count} time(s) "
            f"(now {info.status})"
        )
    return what


def _built_images(ctx: OperationContext) -> list[str]:
    """The images shipyard built for the environment: its retained releases', and the one an
    interrupted deploy built (no release names it yet)."""
    images = [release.image for release in ctx.store.releases()]
    intent = ctx.store.intent()
    if intent is not None and intent.fresh_image and intent.release is not None:
        images.append(intent.release.image)
    return list(dict.fromkeys(images))


def _images_to_remove(
    ctx: OperationContext, docker: Docker, images: list[str]
) -> list[tuple[str, str | None]]:
    """Each image still on the engine, with why it must stay (``None``: it can go): the
    releases of another environment of the app under the same state directory name it, or a
    container (of any project) uses it."""
    named: dict[str, str] = {}  # image reference or ID → the environment whose release names it
    siblings = ctx.store.host.run(["ls", "-1", "-A", str(ctx.store.root.parent)], check=False)
    for environment in siblings.stdout.split() if siblings.ok else []:
        if environment == ctx.store.root.name:
            continue
        try:
            releases = StateStore(ctx.store.host, ctx.store.root.parent / environment).releases()
        except (StateError, TypeError):
            releases = []  # not an environment's state: nothing it names
        for release in releases:
            named.setdefault(release.image, environment)
            named.setdefault(release.image_id, environment)
    found: list[tuple[str, str | None]] = []
    for image in images:
        info = docker.image(image)
        if info is None:
            continue  # removed already
        other = named.get(image) or named.get(info.id)
        if other is not None:
            found.append((image, f"a release of environment {other}"))
            continue
        users = docker.containers_using(image)
        found.append((image, f"used by container {', '.join(users)}" if users else None))
    return found


def _interrupted(ctx: OperationContext) -> Intent | None:
    """The journalled operation, unless it is still running (it holds a live lock)."""
    intent = ctx.store.intent()
    if intent is None:
        return None
    lock = ctx.store.lock(ctx.deployment_id, "status")
    holder = lock.holder()
    if (
        holder is not None
        and holder.get("deployment_id") == intent.deployment_id
        and not lock.is_stale(holder)
    ):
        return None  # in progress, not interrupted
    return intent


def _plan_lock_and_repair(ctx: OperationContext) -> list[PlanStep]:
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


def _stack_containers(names: Names) -> list[str]:
    return [
        names.database,
        names.proxy,
        names.guard,
        names.live,
        names.switching,
        names.slot("blue"),
        names.slot("green"),
    ]


def _serving_problems(
    steps: DockerSteps, found: Mapping[str, ContainerInfo | None], health: str, detail: str
) -> list[str]:
    """What keeps a deployed environment from serving well: no running live container, an
    unhealthy app, a dirty schema. ``found``: the stack's containers, inspected."""
    problems = []
    live = found[steps.names.live]
    if live is None or not live.running:
        state = f"{live.name} {live.status}" if live is not None else f"{steps.names.live} absent"
        switching = found[steps.names.switching]
        if switching is not None and switching.running:
            slot = switching.labels.get(f"{LABEL}.slot", "?")
            problems.append(
                f"no container carries the live name ({state}): a switch was cut short, the "
                f"proxy sends requests to {switching.name} (slot {slot})"
            )
        elif steps._running_slots():
            problems.append(
                f"no container carries the live name ({state}): a switch was cut short, the "
                "proxy sends requests to any running slot"
            )
        else:
            problems.append(f"no container serves ({state})")
    if health not in ("healthy", "degraded"):
        problems.append(f"the app is {health} through the proxy ({detail})")
    database = steps._database()
    db = found[steps.names.database] if database is not None else None
    if database is not None and db is not None and db.running:
        try:
            schema = database.migration_state()
        except ShipyardError as exc:
            problems.append(f"the migration state cannot be read: {exc.message}")
        else:
            if schema.dirty:
                problems.append(
                    f"the schema is dirty at version {schema.version}: a migration failed part-way"
                )
    return problems


def _describe(info: ContainerInfo | None) -> str:
    if info is None:
        return "absent"
    slot = info.labels.get(f"{LABEL}.slot")
    return (
        info.status
        + (f" ({info.health})" if info.health else "")
        + (f", slot {slot}" if slot else "")
    )


def _proxy_health(steps: DockerSteps) -> tuple[str, str, str]:
    """The app's health through the proxy, the way users reach it (``shipyard.proxy.probe``):
    the health, what answered, and the URL probed and how."""
    path = next((c.path for c in steps.config.health.checks if c.kind == "http"), "/health")
    endpoint = steps.endpoints()[0]
    answer = probe(endpoint, path, verify=steps.trust(), timeout=5)
    return judge_health(answer), answer.describe(), endpoint.describe(path)


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


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in (text or "(empty)").splitlines()[-20:])
