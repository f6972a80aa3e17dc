"""The docker provider's steps against a recording fake engine (no Docker)."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import httpx
import pytest

from shipyard.config import Config
from shipyard.docker import Docker
from shipyard.errors import CommandFailed, DeployFailed, HostUnreachable, StateError
from shipyard.health import CheckResult, Target
from shipyard.hosts import CommandResult
from shipyard.providers.docker import DockerSteps
from shipyard.providers.docker import _observation as observation
from shipyard.providers.docker._base import _poll
from shipyard.proxy import Answer, Endpoint, Latency, Observed, Traffic
from shipyard.state import Release
from shipyard.waiting import Clock
from tests.bad_configs import VALID, committed_config
from tests.fakes import FakeHost, Responder
from tests.unit.fake_clock import FakeClock
from tests.unit.pipeline_harness import operation_context


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
    return DockerSteps(operation_context(config, host), host)


def test_the_plain_http_transport_refuses_an_https_request(config: Config) -> None:
    """The steps' transport reads no CA bundle, so it must never carry TLS: an https:// URL is
    refused before anything is sent."""
    transport = _steps(config, FakeHost()).http
    with pytest.raises(httpx.UnsupportedProtocol, match="plain HTTP only"):
        transport.handle_request(httpx.Request("GET", "https://events.example/health"))


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
    clock, admin = FakeClock(), _Admin([0])
    left = _draining(config, admin)._drain("10.0.0.3:8080", clock=clock, sleep=clock.sleep)
    assert left == 0
    assert admin.asked == ["10.0.0.3:8080"] and clock.sleeps == []


def test_the_drain_polls_with_a_backing_off_pause_until_the_requests_end(config: Config) -> None:
    clock, admin = FakeClock(), _Admin([3, 2, 2, 1, 1, 1, 0])
    left = _draining(config, admin)._drain("10.0.0.3:8080", clock=clock, sleep=clock.sleep)
    assert left == 0
    assert clock.sleeps == [0.02, 0.04, 0.08, 0.16, 0.25, 0.25]


def test_the_drain_gives_up_at_the_drain_timeout(config: Config) -> None:
    clock, admin = FakeClock(), _Admin([4])
    steps = _draining(config, admin)
    left = steps._drain("10.0.0.3:8080", clock=clock, sleep=clock.sleep)
    assert left == 4
    assert clock.now == pytest.approx(config.deploy.drain_timeout)


@pytest.mark.parametrize(("refresh", "pause"), [(0.05, 0.05), (0.1, 0.15), (0.25, 0.45)])
def test_the_drain_right_after_a_switch_waits_for_the_proxy_to_look_the_names_up_again(
    config: Config, refresh: float, pause: float
) -> None:
    """Two of the running proxy's lookups after the switch (today's 50 ms, or the refresh a
    proxy an earlier shipyard started keeps: 100 or 250 ms)."""
    clock, admin = FakeClock(), _Admin([0])
    steps = _draining(config, admin)
    steps._lookup_refresh_s = refresh  # as the switch's _ensure_proxy read it
    clock.now = 100.0
    steps._switched_at = 99.95
    steps._drain("10.0.0.3:8080", clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [pytest.approx(pause)]


def test_poll_returns_the_first_answer_and_backs_off_meanwhile() -> None:
    clock = FakeClock()
    answers = iter([None, None, None, {}])
    assert _poll(lambda: next(answers), seconds=5, what="x", clock=clock, sleep=clock.sleep) == {}
    assert clock.sleeps == [0.02, 0.04, 0.08]
    with pytest.raises(StateError, match="the proxy's admin API did not become ready within 1s"):
        _poll(lambda: None, seconds=1, what="the proxy's admin API", clock=clock, sleep=clock.sleep)


# -- verify and the watch, on a clock that moves only when they pause ------------------------------

COMMIT = "0123456789abcdef0123456789abcdef01234567"
RELEASE = Release(
    id="r1",
    version="1.0.0",
    commit=COMMIT,
    image="shop:1.0.0",
    image_id="sha256:r1",
    slot="green",
    migration_version=None,
    created_at="2026-01-01T00:00:00Z",
    deployed_by="me",
)


def _observed(config: Config) -> tuple[DockerSteps, FakeClock]:
    steps, clock = _steps(config, FakeHost(engine({}))), FakeClock()
    steps.clock = Clock(clock, clock.sleep)
    return steps, clock


def _probing(monkeypatch: pytest.MonkeyPatch, answers: list[tuple[int | None, str]]) -> list[float]:
    """The proxy answers ``answers`` in turn (status, body; ``None``: no answer), the last
    repeating; returns the list the times of the probes go to."""
    asked: list[float] = []

    def probe(endpoint: Endpoint, path: str, **_: object) -> Answer:
        status, body = answers[min(len(asked), len(answers) - 1)]
        asked.append(len(asked))
        if status is None:
            return Answer(endpoint, path, error="ConnectError: refused")
        return Answer(endpoint, path, status=status, body=body)

    monkeypatch.setattr(observation, "probe", probe)
    return asked


def test_verify_asks_at_once_then_backs_off_until_the_commit_is_served(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps, clock = _observed(config)
    old = (200, json.dumps({"git_commit": "f" * 40}))
    new = (200, json.dumps({"git_commit": COMMIT}))
    asked = _probing(monkeypatch, [(None, ""), old, old, old, new])
    assert steps.verify(RELEASE).endswith(f"reports {COMMIT[:7]}")
    # Until the proxy answers, then (asked again at once) until the answer names the commit.
    assert clock.sleeps == [0.025, 0.025, 0.05] and len(asked) == 5


def test_verify_gives_the_commit_verify_timeout_from_the_first_answer(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps, clock = _observed(config)
    asked = _probing(monkeypatch, [(None, "")] * 3 + [(200, json.dumps({"git_commit": "f" * 40}))])
    with pytest.raises(DeployFailed, match=f"does not report commit {COMMIT[:7]}"):
        steps.verify(RELEASE)
    first_answer = 0.025 + 0.05 + 0.1  # after three probes without an answer
    assert clock.now == pytest.approx(first_answer + config.deploy.verify_timeout)
    assert max(clock.sleeps) == 0.5 and len(asked) > 20


def test_verify_of_a_proxy_that_never_answers_fails_at_verify_timeout(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps, clock = _observed(config)
    _probing(monkeypatch, [(None, "")])
    with pytest.raises(DeployFailed, match="the proxy does not answer: ConnectError"):
        steps.verify(RELEASE)
    assert clock.now == pytest.approx(config.deploy.verify_timeout)


class _Check:
    """A health check answering from a script of pass/fail (the last repeats)."""

    name = "scripted"

    def __init__(self, script: list[bool]) -> None:
        self.script, self.rounds = script, 0

    def run(self, target: Target, timeout: float) -> CheckResult:
        ok = self.script[min(self.rounds, len(self.script) - 1)]
        self.rounds += 1
        return CheckResult(self.name, ok, "200" if ok else "GET /health → 503")


class _Proxy:
    """The proxy's request counters: ``per_round`` (total, 5xx) more at each reading."""

    def __init__(self, per_round: tuple[int, int]) -> None:
        self.per_round, self.readings = per_round, 0

    def traffic(self) -> Traffic:
        total, errors = self.per_round
        self.readings += 1
        return Traffic(total * self.readings, errors * self.readings)

    def observe(self) -> Observed:
        return Observed(self.traffic(), Latency(()), None)


def _watching(
    config: Config, monkeypatch: pytest.MonkeyPatch, check: _Check, proxy: _Proxy
) -> tuple[DockerSteps, FakeClock]:
    steps, clock = _observed(config)
    steps.admin = lambda proxy_info=None: proxy  # type: ignore[assignment,method-assign,misc]
    steps._target = lambda slot, info=None: None  # type: ignore[assignment,method-assign,misc,return-value]
    monkeypatch.setattr(observation, "build_checks", lambda health: [check])
    return steps, clock


def test_the_watch_runs_a_round_every_interval_and_one_at_the_end(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    check = _Check([True, False, True])  # one failing round is not `health.failures` (2)
    steps, clock = _watching(config, monkeypatch, check, _Proxy((10, 0)))
    assert steps.watch("green", 3) == (
        "healthy for 3s; checks 3 passed, 1 failed; 40 request(s), 0 5xx; p95 -"
    )
    assert clock.sleeps == [1.0, 1.0, 1.0] and check.rounds == 4


def test_the_watch_fails_after_health_failures_rounds_in_a_row(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    check = _Check([True, False, False])
    steps, clock = _watching(config, monkeypatch, check, _Proxy((10, 0)))
    with pytest.raises(
        DeployFailed, match="slot green turned unhealthy after the switch: GET /health → 503"
    ):
        steps.watch("green", 30)
    assert check.rounds == 3 and clock.now == pytest.approx(2.0)


def test_the_watch_fails_on_the_proxys_5xx_rate_once_it_saw_enough_requests(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    check = _Check([True])
    steps, _ = _watching(config, monkeypatch, check, _Proxy((8, 1)))  # 12.5% > 5%
    with pytest.raises(DeployFailed, match=r"3 of 24 requests .* failed with 5xx \(12% > 5%\)"):
        steps.watch("green", 30)
    assert check.rounds == 3  # 8 and 16 requests were too few to judge (min_requests 20)


@pytest.mark.parametrize(
    "stderr",
    [
        "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?",
        "error during connect: Get http://%2Fvar%2Frun%2Fdocker.sock/v1.41/containers/json",
    ],
)
def test_a_command_that_finds_no_engine_says_the_engine_is_not_reachable(stderr: str) -> None:
    def respond(argv: list[str]) -> CommandResult:
        raise CommandFailed("web-1", argv, 1, stderr)

    docker = Docker(FakeHost(respond))
    for call in (
        lambda: docker.rename("a", "b"),
        lambda: docker.exec_streaming("db", ["pg_dump"], stdout_path=PurePosixPath("/tmp/d")),
    ):
        with pytest.raises(HostUnreachable, match="on fake: the Docker engine is not reachable"):
            call()


def test_a_command_that_fails_otherwise_keeps_its_own_error() -> None:
    def respond(argv: list[str]) -> CommandResult:
        raise CommandFailed("web-1", argv, 1, "Error: No such container: a")

    with pytest.raises(CommandFailed, match="No such container"):
        Docker(FakeHost(respond)).rename("a", "b")
