"""The library's way in: open an environment, act on it, close it.

``open_session`` loads the config and the env file, connects the host the environment's target
names, opens its state store and an event bus with the deployment log and the notifiers, and
picks the provider. The ``Session`` closes what it opened (the bus, waiting a bounded time for
notifications; the SSH connection; a worktree of ``ref``) when it is closed or leaves a
``with`` block::

    with open_session(Path("shipyard.yml"), "production") as session:
        session.provider.deploy(session.ctx, DeployOptions())

``check`` runs every check of `shipyard check`. The CLI is one user of this module; tests and
benchmarks are others.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import TYPE_CHECKING, Self, TypeVar

from shipyard.build import source_at
from shipyard.config import Config, SSHSection, load_config
from shipyard.deploy import (
    Checked,
    OperationContext,
    across_nodes,
    check_file,
    new_deployment_id,
    rollout_error,
)
from shipyard.errors import HostUnreachable, ShipyardError, UnknownNode
from shipyard.events import Bus, DeploymentLog, Sink, dispatcher_for
from shipyard.hosts import Host, LocalHost, SSHHost, SSHSettings, SudoHost, parse_ssh_target
from shipyard.providers import Provider, get_provider, state_store

if TYPE_CHECKING:
    from shipyard.provision import StepResult

__all__ = [
    "Session",
    "Sessions",
    "check",
    "connect",
    "local_logs",
    "on_nodes",
    "open_session",
    "open_sessions",
    "provision_nodes",
    "ssh_settings",
    "state_root",
]

T = TypeVar("T")

# Called with the config as soon as it is loaded: before anything else can fail, a caller can
# mask its error output with the config's secrets.
OnConfig = Callable[[Config], None]


class _Closing:
    """``with`` closes it."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


@dataclass
class Session(_Closing):
    """One node of an environment, opened: its config, host, provider and operation context."""

    config: Config
    host: Host
    provider: Provider
    ctx: OperationContext
    _resources: ExitStack = field(default_factory=ExitStack, repr=False)

    def close(self) -> None:
        """Close what the session opened, newest first: the event bus (a bounded wait for
        notifications), the connection to the host."""
        self._resources.close()


class Sessions(_Closing, list[Session]):
    """One session per node of an environment (``target``, then ``targets``), sharing a
    deployment id and, with ``ref``, one worktree. Closing closes every session, then the
    worktree."""

    def __init__(self, sessions: list[Session], shared: ExitStack) -> None:
        super().__init__(sessions)
        self._shared = shared

    def close(self) -> None:
        with self._shared:
            for session in reversed(self):
                session.close()


def open_session(
    config_path: Path,
    environment: str,
    *,
    sink: Sink | None = None,
    ref: str | None = None,
    node: str | None = None,
    on_config: OnConfig | None = None,
) -> Session:
    """The session of one node of the environment: ``node`` (one of its nodes, else
    ``UnknownNode``), or its ``target``. ``sink`` gets every event besides the deployment
    log and the notifiers (the CLI's console or JSON lines). ``ref``: the source at that
    branch, tag or commit, in a temporary worktree closed with the session."""
    shared = ExitStack()
    try:
        config = _load(config_path, environment, ref, on_config, shared)
        if node is not None:
            nodes = config.environment.nodes
            if node not in nodes:
                raise UnknownNode(
                    f"--node {node} is not a node of {environment!r}; its nodes: {', '.join(nodes)}"
                )
            config = _on(config, node)
        session = _session(config, sink=sink)
    except BaseException:
        shared.close()
        raise
    # The worktree (``ref``) is closed last, after the bus and the connection.
    own, session._resources = session._resources, ExitStack()
    session._resources.push(shared)
    session._resources.push(own)
    return session


def open_sessions(
    config_path: Path,
    environment: str,
    *,
    sink: Sink | None = None,
    ref: str | None = None,
    on_config: OnConfig | None = None,
) -> Sessions:
    """One session per node of the environment, sharing a deployment id (see ``open_session``)."""
    shared = ExitStack()
    opened: list[Session] = []
    try:
        config = _load(config_path, environment, ref, on_config, shared)
        deployment_id = new_deployment_id()
        for node in config.environment.nodes:
            opened.append(_session(_on(config, node), sink=sink, deployment_id=deployment_id))
    except BaseException:
        for session in reversed(opened):
            session.close()
        shared.close()
        raise
    return Sessions(opened, shared)


def on_nodes(
    sessions: list[Session], action: Callable[[Session], T], what: str
) -> list[tuple[Session, T]]:
    """``action`` on every node, in order (``deploy.parallelism`` at a time); the first failure
    stops the rollout and is raised with every node's fate."""
    if len(sessions) == 1:
        return [(sessions[0], action(sessions[0]))]
    by_node = {s.config.environment.target: s for s in sessions}
    outcomes = across_nodes(
        list(by_node),
        lambda node: action(by_node[node]),
        parallelism=sessions[0].config.deploy.parallelism,
    )
    error = rollout_error(outcomes, what)
    if error is not None:
        raise error
    return [(by_node[o.node], o.result) for o in outcomes if o.result is not None]


def check(config_path: Path, environment: str, *, allow_dirty: bool = False) -> Checked:
    """Everything `shipyard check` verifies (``shipyard.deploy.check_file``), the target's
    engine checked by its provider."""
    return check_file(config_path, environment, engine=_engine, allow_dirty=allow_dirty)


def connect(config: Config) -> Host:
    """The host an environment's target names (an ``SSHHost`` for ssh:// targets; the caller
    closes it). An aws:// or gcp:// target has no host of its own: this machine, where the build
    runs."""
    target = config.environment.target
    if target == "local":
        return LocalHost(config.masker)
    if target.startswith("ssh://"):
        return SSHHost(target, ssh_settings(config), config.masker)
    if target.startswith(("aws://", "gcp://")):  # no host of its own: the build runs here
        return LocalHost(config.masker)
    if target.startswith("do://"):
        return SSHHost(_droplet(config), ssh_settings(config), config.masker)
    raise HostUnreachable(
        f"target {target}: unknown kind of target",
        hint="use local, ssh://, aws://, gcp:// or do://",
    )


def _droplet(config: Config, *, made: Callable[[list[str]], None] | None = None) -> str:
    """A do:// target's Droplet as an ssh:// target; with ``made``, made first when missing
    (its firewall and reserved IP too), and what was made told to ``made``."""
    from shipyard.providers.digitalocean import droplet_target, resources  # noqa: PLC0415

    cloud = resources(config, known_hosts=ssh_settings(config).known_hosts)
    try:
        if made is not None:
            made([str(action) for action in cloud.ensure()])
        target = droplet_target(config, cloud)
    finally:
        cloud.api.close()
    if target is None:
        raise HostUnreachable(
            f"{config.environment.target}: no Droplet tagged {cloud.names.tag} yet",
            hint=f"`shipyard provision {config.environment.name}` creates it",
        )
    return target


def ssh_settings(config: Config) -> SSHSettings:
    """``providers.ssh`` (validated by the loader); paths are relative to shipyard.yml."""
    section = SSHSection.model_validate(config.providers.get("ssh") or {})

    def path(value: str | None) -> Path | None:
        return config.root / Path(value).expanduser() if value else None

    known_hosts, options = path(section.known_hosts), tuple(section.options)
    if config.environment.target.startswith("do://"):
        from shipyard.providers.digitalocean import DoNames  # noqa: PLC0415

        # Where shipyard trusts a new Droplet's host key, named to ssh too (ssh's own default
        # is the passwd entry's home, which may not be $HOME), under the Droplet's name.
        known_hosts = known_hosts or Path("~/.ssh/known_hosts").expanduser()
        alias = DoNames(config.app.name, config.environment.name).droplet
        options = (*options, f"HostKeyAlias={alias}")
    return SSHSettings(
        known_hosts=known_hosts,
        identity_file=path(section.identity_file),
        options=options,
        connect_timeout=section.connect_timeout,
        control_persist=section.control_persist,
    )


def provision_nodes(
    config_path: Path,
    environment: str,
    *,
    user: str,
    sudo: bool,
    deploy_user: str | None,
    report: Callable[[str, StepResult], None],
    on_config: OnConfig | None = None,
) -> dict[str, list[StepResult]]:
    """Provision every ssh:// node of the environment, one after the other; a do:// target's
    Droplet, created first when missing."""
    from shipyard.provision import (  # noqa: PLC0415 — provision only
        ProvisionOptions,
        StepResult,
        provision,
    )

    config = load_config(config_path, environment)
    if on_config is not None:
        on_config(config)
    created: list[str] = []  # a Droplet this run created
    if config.environment.target.startswith("do://"):

        def made(actions: list[str]) -> None:
            created.extend(a for a in actions if a.startswith("droplet: create"))
            detail = "; ".join(actions) or "Droplet, firewall and key in place"
            report(
                config.environment.target,
                StepResult("cloud", "changed" if actions else "unchanged", detail),
            )

        nodes = [_droplet(config, made=made)]
    else:
        nodes = [t for t in config.environment.nodes if t.startswith("ssh://")]
    if not nodes:
        raise ShipyardError(
            f"environment {environment!r} has no ssh:// target to provision",
            hint="provision prepares remote hosts; a local target needs Docker installed by hand",
        )
    done: dict[str, list[StepResult]] = {}
    for node in nodes:
        target = parse_ssh_target(node)
        connection = SSHHost(
            f"ssh://{user}@{target.host}:{target.port}", ssh_settings(config), config.masker
        )
        host: Host = SudoHost(connection, config.masker) if sudo else connection
        options = ProvisionOptions(
            deploy_user=deploy_user
            or (target.user if target.user not in (None, "root") else "deploy"),
            connected_as=user,
            ssh_port=target.port,
            state_dir=config.deploy.state_dir or "/var/lib/shipyard",
        )
        try:
            done[node] = provision(host, options, report=functools.partial(report, node))
            if created:
                done[node].append(_new_host_key(config, host))
                report(node, done[node][-1])
        finally:
            connection.close()
    return done


def _new_host_key(config: Config, host: Host) -> StepResult:
    """A new Droplet's host key made on it, in place of the one ``user_data`` carried."""
    from shipyard.providers.digitalocean import resources  # noqa: PLC0415
    from shipyard.provision import StepResult  # noqa: PLC0415 — provision only

    cloud = resources(config, known_hosts=ssh_settings(config).known_hosts)
    try:
        cloud.rotate_host_key(host)
    finally:
        cloud.api.close()
    return StepResult(
        "host-key", "changed", "made on the Droplet, replacing the one its user_data carried"
    )


def state_root(config: Config, host: Host) -> PurePosixPath:
    """Where the environment's state lives on its host."""
    if config.deploy.state_dir:
        base = PurePosixPath(config.deploy.state_dir)
    elif config.environment.target == "local":
        base = host.home() / ".local" / "state" / "shipyard"
    else:
        base = PurePosixPath("/var/lib/shipyard")
    return base / config.app.name / config.environment.name


def local_logs(config: Config) -> Path:
    """Where this machine keeps the deployment logs of an app environment."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "shipyard" / "logs" / config.app.name / config.environment.name


def _load(
    config_path: Path,
    environment: str,
    ref: str | None,
    on_config: OnConfig | None,
    resources: ExitStack,
) -> Config:
    config = load_config(config_path, environment)
    if on_config is not None:
        on_config(config)
    if ref is not None:
        config = resources.enter_context(source_at(LocalHost(config.masker), config, ref))
    return config


def _on(config: Config, node: str) -> Config:
    return replace(config, environment=replace(config.environment, target=node))


def _session(config: Config, *, sink: Sink | None, deployment_id: str | None = None) -> Session:
    resources = ExitStack()
    try:
        host = connect(config)
        if isinstance(host, SSHHost):
            resources.callback(host.close)
        bus = Bus(config.masker)
        resources.callback(bus.close)  # first to close: its deliveries may still use the host
        if sink is not None:
            bus.subscribe(sink)
        deployment_id = deployment_id or new_deployment_id()
        store = state_store(config, host, state_root(config, host))
        bus.subscribe(
            DeploymentLog(
                local_logs(config) / f"{deployment_id}.jsonl",
                store.backend,
                keep=config.deploy.keep_logs,
            )
        )
        notifications = dispatcher_for(config)
        if notifications is not None:
            bus.subscribe(notifications)
        ctx = OperationContext(
            config=config,
            local=LocalHost(config.masker),
            store=store,
            bus=bus,
            deployment_id=deployment_id,
            target=host,
        )
        provider = get_provider(config.environment.provider, host, config_file=str(config.path))
    except BaseException:
        resources.close()
        raise
    return Session(config=config, host=host, provider=provider, ctx=ctx, _resources=resources)


def _engine(config: Config) -> str:
    with _closing(connect(config)) as host:
        provider = get_provider(config.environment.provider, host, config_file=str(config.path))
        return provider.preflight(config)


@contextmanager
def _closing(host: Host) -> Iterator[Host]:
    try:
        yield host
    finally:
        if isinstance(host, SSHHost):
            host.close()
