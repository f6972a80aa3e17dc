"""The docker provider's steps against a recording fake engine (no Docker)."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import pytest

from shipyard.config import Config
from shipyard.deploy import OperationContext
from shipyard.errors import DeployFailed, StateError
from shipyard.events import Bus
from shipyard.hosts import CommandResult, LocalHost
from shipyard.providers.docker import DockerSteps
from shipyard.providers.docker._base import _poll
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


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


class _Admin:
    """The proxy's in-flight count for one upstream, from a script (the last repeats)."""

    def __init__(self, counts: list[int]) -> None:
        self.counts = counts
        self.asked: list[str] = []

    def in_flight(self, upstream: str) -> int:
        self.asked.append(upstream)
        return self.counts[min(len(self.asked), len(self.counts)) - 1]


def _draining(config: Config, admin: _Admin) -> DockerSteps:
    steps = _steps(config, FakeHost(engine({})))
    steps.admin = lambda proxy=None: admin  # type: ignore[assignment,method-assign,misc]
    return steps


def test_the_drain_ends_as_soon_as_nothing_is_in_flight(config: Config) -> None:
    clock, admin = _Clock(), _Admin([0])
    left = _draining(config, admin)._drain("10.0.0.3:8080", clock=clock, sleep=clock.sleep)
    assert left == 0
    assert admin.asked == ["10.0.0.3:8080"] and clock.sleeps == []


def test_the_drain_polls_with_a_backing_off_pause_until_the_requests_end(config: Config) -> None:
    clock, admin = _Clock(), _Admin([3, 2, 2, 1, 1, 1, 0])
    left = _draining(config, admin)._drain("10.0.0.3:8080", clock=clock, sleep=clock.sleep)
    assert left == 0
    assert clock.sleeps == [0.02, 0.04, 0.08, 0.16, 0.25, 0.25]


def test_the_drain_gives_up_at_the_drain_timeout(config: Config) -> None:
    clock, admin = _Clock(), _Admin([4])
    steps = _draining(config, admin)
    left = steps._drain("10.0.0.3:8080", clock=clock, sleep=clock.sleep)
    assert left == 4
    assert clock.now == pytest.approx(config.deploy.drain_timeout)


def test_the_drain_right_after_a_switch_waits_for_the_proxy_to_look_the_names_up_again(
    config: Config,
) -> None:
    clock, admin = _Clock(), _Admin([0])
    steps = _draining(config, admin)
    clock.now = 100.0
    steps._switched_at = 99.9
    steps._drain("10.0.0.3:8080", clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [pytest.approx(0.4)]  # two lookups (2 x 250 ms) after the switch


def test_poll_returns_the_first_answer_and_backs_off_meanwhile() -> None:
    clock = _Clock()
    answers = iter([None, None, None, {}])
    assert _poll(lambda: next(answers), seconds=5, what="x", clock=clock, sleep=clock.sleep) == {}
    assert clock.sleeps == [0.02, 0.04, 0.08]
    with pytest.raises(StateError, match="the proxy's admin API did not become ready within 1s"):
        _poll(lambda: None, seconds=1, what="the proxy's admin API", clock=clock, sleep=clock.sleep)
