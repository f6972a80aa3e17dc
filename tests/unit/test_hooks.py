"""Deploy hooks and lifecycle events in the pipeline, with recording steps (no engine)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from shipyard.build import Image
from shipyard.config import Config
from shipyard.deploy import (
    DeployOptions,
    HookFacts,
    HookPoint,
    hook_env,
    run_deploy,
)
from shipyard.errors import DeployFailed, LockHeld
from shipyard.events import Event, EventKind
from shipyard.hosts import LocalHost
from shipyard.state import Current, StateStore
from tests.bad_configs import VALID, committed_config
from tests.fakes import FakeHost
from tests.unit.pipeline_harness import STATE, operation_context, recording_bus
from tests.unit.test_pipeline import RecordingSteps

# A hook that writes its SHIPYARD_* environment to <name>.json next to shipyard.yml and exits
# with the code given as its second argument.
RECORD = (
    "import json, os, sys; "
    "json.dump({k: v for k, v in os.environ.items() if k.startswith('SHIPYARD_')}, "
    "open(sys.argv[1] + '.json', 'w')); sys.exit(int(sys.argv[2]))"
)


def _hook(name: str, code: int = 0, where: str = "local") -> str:
    argv = json.dumps([sys.executable, "-c", RECORD, name, str(code)])
    return f"    - argv: {argv}\n      where: {where}\n      name: {name}\n"


def _config(tmp_path: Path, hooks: str) -> Config:
    return committed_config(tmp_path, VALID + "hooks:\n  timeout: 30s\n" + hooks)


def _deploy(
    config: Config,
    steps: RecordingSteps,
    monkeypatch: pytest.MonkeyPatch,
    *,
    state_host: FakeHost | None = None,
    target: FakeHost | None = None,
    events: list[Event] | None = None,
) -> tuple[list[Event], list[str]]:
    """Run a deploy; ``events`` (if given) keeps the events even when the deploy raises."""
    built: list[str] = []
    bus, events = recording_bus(config, events)

    def build(cfg: object, local: object, version: object, rebuild: bool = False) -> Image:
        built.append("build")
        return Image(tag="shop:x", id="sha256:1", version=version)  # type: ignore[arg-type]

    monkeypatch.setattr("shipyard.deploy.build_image", build)
    ctx = operation_context(
        config, state_host or FakeHost(), local=LocalHost(config.masker), bus=bus, target=target
    )
    try:
        run_deploy(ctx, steps, DeployOptions(allow_dirty=True))
    finally:
        bus.close()
    return events, built


def _recorded(config: Config, name: str) -> dict[str, str]:
    path = config.root / f"{name}.json"
    assert path.exists(), f"hook {name} did not run"
    data: dict[str, str] = json.loads(path.read_text())
    return data


def test_hook_env_names_every_fact() -> None:
    facts = HookFacts(
        app="shop",
        environment="production",
        deployment_id="d9",
        action="deploy",
        node="web-1",
        version="1.2.3",
        commit="abc",
        slot="green",
        previous_slot="blue",
    )
    env = hook_env(facts, HookPoint.BEFORE_SWITCH)
    assert env["SHIPYARD_APP"] == "shop"
    assert env["SHIPYARD_ENVIRONMENT"] == "production"
    assert env["SHIPYARD_DEPLOYMENT_ID"] == "d9"
    assert env["SHIPYARD_VERSION"] == "1.2.3"
    assert env["SHIPYARD_COMMIT"] == "abc"
    assert env["SHIPYARD_SLOT"] == "green"
    assert env["SHIPYARD_PREVIOUS_SLOT"] == "blue"
    assert env["SHIPYARD_NODE"] == "web-1"
    assert env["SHIPYARD_HOOK"] == env["SHIPYARD_PHASE"] == "before_switch"
    assert env["SHIPYARD_ERROR"] == ""  # always set, so hooks can test it


def test_failing_before_deploy_hook_stops_before_any_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, "  before_deploy:\n" + _hook("gate", 3))
    steps, state = RecordingSteps(), FakeHost()
    with pytest.raises(DeployFailed) as caught:
        _deploy(config, steps, monkeypatch, state_host=state)
    assert caught.value.phase == "before_deploy"
    assert "exited 3" in caught.value.message
    assert steps.calls == ["preflight"]  # nothing delivered, started or switched
    env = _recorded(config, "gate")
    assert env["SHIPYARD_VERSION"].startswith("0.0.0+")
    assert len(env["SHIPYARD_COMMIT"]) == 40
    assert StateStore.on_host(state, STATE).history()[-1].result == "failed"


def test_failing_before_switch_hook_removes_the_candidate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, "  before_switch:\n" + _hook("smoke", 1))
    steps, state = RecordingSteps(), FakeHost()
    StateStore.on_host(state, STATE).set_current(
        Current(slot="blue", release_id="old", switched_at="t")
    )
    with pytest.raises(DeployFailed) as caught:
        _deploy(config, steps, monkeypatch, state_host=state)
    assert caught.value.phase == "before_switch"
    assert steps.calls[-3:] == ["gate green", "remove green", "discard"]
    assert not any(call.startswith("switch") for call in steps.calls)
    env = _recorded(config, "smoke")
    assert (env["SHIPYARD_SLOT"], env["SHIPYARD_PREVIOUS_SLOT"]) == ("green", "blue")


def test_failing_after_hooks_are_warnings_and_local_and_target_hooks_see_the_facts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooks = (
        "  after_switch:\n"
        + _hook("purge", 5)
        + "  after_deploy:\n"
        + _hook("announce")
        + "    - argv: [systemctl, reload, thing]\n      where: target\n"
    )
    config = _config(tmp_path, hooks)
    target = FakeHost()
    events, _ = _deploy(config, RecordingSteps(), monkeypatch, target=target)

    warnings = [e.message for e in events if e.kind == EventKind.WARNING]
    assert any("after_switch hook failed" in w and "exited 5" in w for w in warnings)
    assert events[-1].kind == EventKind.PROFILE  # the profile closes every operation
    assert events[-2].kind == EventKind.PHASE_FINISHED and events[-2].phase == "after_deploy"
    assert EventKind.DEPLOY_COMPLETED in [e.kind for e in events]
    announce = _recorded(config, "announce")
    assert announce["SHIPYARD_HOOK"] == "after_deploy"
    assert announce["SHIPYARD_URL"] == "http://localhost:1"
    assert announce["SHIPYARD_DEPLOYMENT_ID"] == "d1"
    assert target.commands[-1] == ["systemctl", "reload", "thing"]
    assert target.envs[-1]["SHIPYARD_APP"] == "shop"
    assert target.envs[-1]["SHIPYARD_ENVIRONMENT"] == "development"


def test_on_failure_hook_gets_the_masked_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, "  on_failure:\n" + _hook("page"))

    class LeakySteps(RecordingSteps):
        def gate(self, slot: str) -> str:
            raise DeployFailed("health", "password s3cret-password rejected")

    with pytest.raises(DeployFailed):
        _deploy(config, LeakySteps(), monkeypatch)
    env = _recorded(config, "page")
    assert env["SHIPYARD_PHASE"] == "health"
    assert env["SHIPYARD_HOOK"] == "on_failure"
    assert "rejected" in env["SHIPYARD_ERROR"]
    assert "s3cret-password" not in env["SHIPYARD_ERROR"]


# -- lifecycle events ---------------------------------------------------------------------------


def test_a_deploy_emits_each_lifecycle_event_with_its_facts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, "")
    events, _ = _deploy(config, RecordingSteps(), monkeypatch)
    lifecycle = [e for e in events if not e.kind.startswith(("phase.", "operation."))]
    assert [e.kind for e in lifecycle] == [
        "deploy.started",
        "deploy.built",
        "deploy.migrated",
        "deploy.switched",
        "deploy.live",
        "deploy.completed",
    ]
    for event in lifecycle:
        assert event.deployment_id == "d1"
        assert (event.app, event.environment) == ("shop", "development")
        assert event.node and event.started_at and event.timestamp
    completed = lifecycle[-1]
    assert completed.version and completed.commit and completed.duration_s is not None
    assert lifecycle[2].data == {"schema_version": 2}
    assert json.loads(completed.to_json())["node"] == completed.node


def test_a_failure_in_the_watch_window_reports_degraded_failed_and_rolled_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, "")
    state = FakeHost()
    StateStore.on_host(state, STATE).set_current(
        Current(slot="blue", release_id="old", switched_at="t")
    )
    events: list[Event] = []
    with pytest.raises(DeployFailed):
        _deploy(
            config,
            RecordingSteps(fail_at="watch green"),
            monkeypatch,
            state_host=state,
            events=events,
        )
    lifecycle = [e.kind for e in events if not e.kind.startswith(("phase.", "operation."))]
    assert lifecycle[-3:] == ["health.degraded", "deploy.failed", "deploy.rolled_back"]
    failed = next(e for e in events if e.kind == EventKind.DEPLOY_FAILED)
    assert failed.phase == "watch" and failed.error and failed.duration_s is not None
    assert events[-1].kind == EventKind.PROFILE
    rolled_back = events[-2] if events[-2].kind == EventKind.DEPLOY_ROLLED_BACK else None
    assert rolled_back is not None and rolled_back.data == {"slot": "blue", "failed_slot": "green"}


def test_lock_held_is_reported_as_lock_blocked(tmp_path: Path) -> None:
    config = _config(tmp_path, "")
    state = FakeHost()
    state.files[f"{STATE}/lock"] = (b"", 0o700)
    bus, events = recording_bus(config)
    ctx = operation_context(config, state, deployment_id="d2", bus=bus)
    with pytest.raises(LockHeld):
        run_deploy(ctx, RecordingSteps(), DeployOptions(allow_dirty=True))
    blocked = [e for e in events if e.kind == EventKind.LOCK_BLOCKED]
    assert len(blocked) == 1 and blocked[0].error


def test_a_hook_that_outlives_its_timeout_fails_the_gate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hang = json.dumps([sys.executable, "-c", "import time; time.sleep(60)"])
    config = _config(
        tmp_path, f"  before_deploy:\n    - argv: {hang}\n      name: hang\n      timeout: 300ms\n"
    )
    steps = RecordingSteps()
    started = time.monotonic()
    with pytest.raises(DeployFailed) as caught:
        _deploy(config, steps, monkeypatch)
    assert time.monotonic() - started < 30
    assert "hook 'hang'" in caught.value.message
    assert "timed out" in caught.value.message
    assert steps.calls == ["preflight"]
