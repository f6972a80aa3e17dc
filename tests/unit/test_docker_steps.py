"""The docker provider's steps against a recording fake engine (no Docker)."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import pytest

from shipyard.config import Config
from shipyard.deploy import OperationContext
from shipyard.errors import DeployFailed
from shipyard.events import Bus
from shipyard.hosts import CommandResult, LocalHost
from shipyard.providers._docker import DockerSteps
from shipyard.state import StateStore
from tests.bad_configs import VALID, committed_config
from tests.fakes import FakeHost, Responder


def engine(
    containers: dict[str, str], networks: tuple[str, ...] = (), volumes: tuple[str, ...] = ()
) -> Responder:
    """A Docker engine holding ``containers`` (name → the slot it carries, or ""), ``networks``
    and ``volumes``."""

    def respond(argv: list[str]) -> CommandResult | None:
        if argv[:3] == ["docker", "container", "inspect"]:
            name = argv[3]
            if name not in containers:
                return CommandResult(tuple(argv), 1, "", f"Error: No such container: {name}")
            labels = {"org.shipyard.slot": containers[name]} if containers[name] else {}
            document = {"Id": name, "Name": f"/{name}", "State": {"Status": "running"}}
            document["Config"] = {"Labels": labels}
            return CommandResult(tuple(argv), 0, json.dumps([document]), "")
        if argv[:3] == ["docker", "network", "ls"]:
            return CommandResult(tuple(argv), 0, "\n".join(networks), "")
        if argv[:3] == ["docker", "volume", "ls"]:
            return CommandResult(tuple(argv), 0, "\n".join(volumes), "")
        if argv[:2] == ["docker", "logs"]:
            return CommandResult(tuple(argv), 0, "", "")
        return None

    return respond


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return committed_config(tmp_path, VALID)


def _steps(config: Config, host: FakeHost) -> DockerSteps:
    ctx = OperationContext(
        config=config,
        local=LocalHost(),
        store=StateStore(host, PurePosixPath("/state/shop/development")),
        bus=Bus(config.masker),
        deployment_id="d1",
    )
    return DockerSteps(ctx, host)


def test_leftovers_are_what_of_the_stack_exists_on_the_host(config: Config) -> None:
    host = FakeHost(
        engine(
            {"shop-development-db": "", "shop-development-proxy": ""},
            networks=("bridge", "shop-development"),
            volumes=("shop-development-pgdata", "other-pgdata"),
        )
    )
    assert _steps(config, host).leftovers() == [
        "database container shop-development-db",
        "proxy container shop-development-proxy",
        "network shop-development",
        "volume shop-development-pgdata",
    ]
    assert _steps(config, FakeHost(engine({}))).leftovers() == []


def test_the_health_gate_says_the_previous_version_kept_serving_only_when_one_did(
    config: Config,
) -> None:
    first = FakeHost(engine({}))
    with pytest.raises(DeployFailed) as caught:
        _steps(config, first).gate("blue")
    assert caught.value.hint == "fix the app or its config and deploy again"

    serving = FakeHost(engine({"shop-development-live": "blue"}))
    with pytest.raises(DeployFailed) as caught:
        _steps(config, serving).gate("green")
    assert caught.value.hint == (
        "the previous version kept serving; fix the app or its config and deploy again"
    )
