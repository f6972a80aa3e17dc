"""Building what a command needs from the config: hosts, state, event bus, provider."""

from __future__ import annotations

import atexit
import functools
import os
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, TypeVar

import click

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
from shipyard.errors import HostUnreachable, ShipyardError
from shipyard.events import Bus, ConsoleSink, DeploymentLog, JsonLinesSink, dispatcher_for
from shipyard.hosts import Host, LocalHost, SSHHost, SSHSettings, SudoHost, parse_ssh_target
from shipyard.providers import Provider, get_provider
from shipyard.secrets import Masker
from shipyard.state import StateStore

if TYPE_CHECKING:
    from shipyard.provision import StepResult


@dataclass(frozen=True)
class Session:
    config: Config
    host: Host
    provider: Provider
    ctx: OperationContext


def connect(config: Config) -> Host:
    """The host an environment's target names (an ``SSHHost`` for ssh:// targets)."""
    target = config.environment.target
    if target == "local":
        return LocalHost(config.masker)
    if target.startswith("ssh://"):
        return SSHHost(target, ssh_settings(config), config.masker)
    raise HostUnreachable(f"target {target}: unknown kind of target", hint="use local or ssh://")


def ssh_settings(config: Config) -> SSHSettings:
    """``providers.ssh`` (validated by the loader); paths are relative to shipyard.yml."""
    section = SSHSection.model_validate(config.providers.get("ssh") or {})

    def path(value: str | None) -> Path | None:
        return config.root / Path(value).expanduser() if value else None

    return SSHSettings(
        known_hosts=path(section.known_hosts),
        identity_file=path(section.identity_file),
        options=tuple(section.options),
        connect_timeout=section.connect_timeout,
        control_persist=section.control_persist,
    )


def run_provision(
    config_path: Path,
    environment: str,
    *,
    user: str,
    sudo: bool,
    deploy_user: str | None,
    report: Callable[[str, StepResult], None],
) -> dict[str, list[StepResult]]:
    """Provision every ssh:// node of the environment, one after the other."""
    from shipyard.provision import ProvisionOptions, provision

    config = load_config(config_path, environment)
    nodes = [t for t in config.environment.nodes if t.startswith("ssh://")]
    if not nodes:
        raise ShipyardError(
            f"environment {environment!r} has no ssh:// target to provision",
            hint="provision prepares remote hosts; a local target needs Docker installed by hand",
        )
    done: dict[str, list[StepResult]] = {}
    for node in nodes:
        target = parse_ssh_target(node)
        host: Host = SSHHost(
            f"ssh://{user}@{target.host}:{target.port}", ssh_settings(config), config.masker
        )
        if sudo:
            host = SudoHost(host, config.masker)
        options = ProvisionOptions(
            deploy_user=deploy_user
            or (target.user if target.user not in (None, "root") else "deploy"),
            connected_as=user,
            ssh_port=target.port,
            state_dir=config.deploy.state_dir or "/var/lib/shipyard",
        )
        done[node] = provision(host, options, report=functools.partial(report, node))
    return done


def state_root(config: Config, host: Host) -> PurePosixPath:
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


_MASKERS: list[Masker] = []  # the CLI's last line of defence for error output


def current_masker() -> Masker:
    """The masker of the session this command opened (a plain one before that)."""
    return _MASKERS[-1] if _MASKERS else Masker()


def _load(config_path: Path, environment: str, ref: str | None) -> Config:
    config = load_config(config_path, environment)
    _MASKERS.append(config.masker)
    if ref is not None:
        worktree = ExitStack()
        atexit.register(worktree.close)
        config = worktree.enter_context(source_at(LocalHost(config.masker), config, ref))
    return config


def open_session(
    config_path: Path,
    environment: str,
    *,
    json_output: bool,
    ref: str | None = None,
    node: str | None = None,
) -> Session:
    """The session of one node of the environment: ``node``, or its ``target``."""
    config = _load(config_path, environment, ref)
    if node is not None:
        nodes = config.environment.nodes
        if node not in nodes:
            raise click.BadParameter(
                f"{node} is not a node of {environment!r}; its nodes: {', '.join(nodes)}",
                param_hint="--node",
            )
        config = replace(config, environment=replace(config.environment, target=node))
    return _session(config, json_output=json_output)


def open_sessions(
    config_path: Path, environment: str, *, json_output: bool, ref: str | None = None
) -> list[Session]:
    """One session per node of the environment (``target``, then ``targets``), sharing a deployment id."""
    config = _load(config_path, environment, ref)
    deployment_id = new_deployment_id()
    return [
        _session(
            replace(config, environment=replace(config.environment, target=node)),
            json_output=json_output,
            deployment_id=deployment_id,
        )
        for node in config.environment.nodes
    ]


T = TypeVar("T")


def node_suffix(session: Session, sessions: list[Session]) -> str:
    """`` on <node>`` when the environment has several nodes."""
    return f" on {session.ctx.node}" if len(sessions) > 1 else ""


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


def _session(config: Config, *, json_output: bool, deployment_id: str | None = None) -> Session:
    host = connect(config)
    bus = Bus(config.masker)
    bus.subscribe(JsonLinesSink() if json_output else ConsoleSink())
    deployment_id = deployment_id or new_deployment_id()
    store = StateStore(host, state_root(config, host))
    bus.subscribe(
        DeploymentLog(
            local_logs(config) / f"{deployment_id}.jsonl",
            host,
            store.path("logs", f"{deployment_id}.jsonl"),
            keep=config.deploy.keep_logs,
        )
    )
    notifications = dispatcher_for(config)
    if notifications is not None:
        bus.subscribe(notifications)
    atexit.register(bus.close)  # after the command's own result is out; bounded wait
    ctx = OperationContext(
        config=config,
        local=LocalHost(config.masker),
        store=store,
        bus=bus,
        deployment_id=deployment_id,
        target=host,
    )
    provider = get_provider(config.environment.provider, host, config_file=str(config.path))
    return Session(config=config, host=host, provider=provider, ctx=ctx)


def run_checks(config_path: Path, environment: str, *, allow_dirty: bool = False) -> Checked:
    """Everything `shipyard check` verifies (``shipyard.deploy.check_file``), the target's
    engine checked by its provider."""
    return check_file(config_path, environment, engine=_engine, allow_dirty=allow_dirty)


def _engine(config: Config) -> str:
    host = connect(config)
    provider = get_provider(config.environment.provider, host, config_file=str(config.path))
    return provider.preflight(config)
