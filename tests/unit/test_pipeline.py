"""The deploy pipeline's order and its failure handling, with recording steps (no engine)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from shipyard.build import Image, VersionInfo
from shipyard.config import Config
from shipyard.database import MigrationPlan, PasswordRotation, Snapshot
from shipyard.deploy import (
    DeployOptions,
    DeployResult,
    Interrupted,
    RollbackOptions,
    RotateOptions,
    Served,
    choose_rollback,
    common_rollback_version,
    run_deploy,
    run_rollback,
    run_rotate_password,
)
from shipyard.errors import (
    DeployFailed,
    HostUnreachable,
    LockHeld,
    LockLost,
    PortInUse,
    RollbackFailed,
    ShipyardError,
    StateError,
)
from shipyard.events import Event
from shipyard.hosts import LocalHost
from shipyard.state import Current, Intent, Release, StateStore
from tests.bad_configs import VALID, committed_config
from tests.fakes import FakeHost
from tests.unit.pipeline_harness import STATE, operation_context, recording_bus
from tests.unit.state_records import succeeded


class RecordingSteps:
    def __init__(
        self,
        fail_at: str | None = None,
        fail_cleanup: bool = False,
        error: type[ShipyardError] = ShipyardError,
    ) -> None:
        self.calls: list[str] = []
        self.fail_at = fail_at
        self.fail_cleanup = fail_cleanup
        self.error = error
        self.snapshot_first = False
        self.left: list[str] = []  # what ``leftovers`` finds on the target
        self.watched: list[float] = []  # the seconds of each watch

    def _do(self, name: str) -> str:
        self.calls.append(name)
        if name == self.fail_at:
            raise self.error(f"{name} broke")
        return name

    def preflight(self) -> str:
        return self._do("preflight")

    def deliver(self, image: Image) -> str:
        return self._do("deliver")

    def ensure_infrastructure(self) -> str:
        return self._do("infrastructure")

    def watch(self, slot: str, seconds: float) -> str:
        self.watched.append(seconds)
        return self._do(f"watch {slot}")

    def schema_version(self) -> int | None:
        return 2

    def newest_snapshot(self) -> str | None:
        return None

    def plan_migrations(self) -> MigrationPlan:
        self._do("plan")
        return MigrationPlan(
            1, ("000002_x.up.sql",), snapshot=self.snapshot_first, snapshot_skip="none pending"
        )

    def snapshot(self, release: object) -> Snapshot:
        self._do("snapshot")
        return Snapshot(
            "db_20260101T000000Z_abc1234",
            "db",
            "shop",
            "development",
            "v",
            "c",
            None,
            "pre-migrate",
            "2026-01-01T00:00:00Z",
            10,
            "0" * 64,
            0.1,
        )

    def migrate(self, release: object) -> int | None:
        self._do("migrate")
        return 2

    def start_slot(self, slot: str, release: object) -> str:
        return self._do(f"start {slot}")

    def remove_slot(self, slot: str) -> None:
        self.calls.append(f"remove {slot}")
        if self.fail_cleanup:
            raise ShipyardError("cannot remove")

    def gate(self, slot: str) -> str:
        return self._do(f"gate {slot}")

    def switch(self, slot: str) -> str:
        return self._do(f"switch {slot}")

    def switch_back(self, slot: str) -> str:
        return self._do(f"switch {slot}")

    def verify(self, release: object) -> str:
        return self._do("verify")

    def retire(self, slot: str) -> str:
        return self._do(f"retire {slot}")

    def prune(self, dropped: list[object], kept: list[object]) -> None:
        if dropped:
            self.calls.append(f"prune {len(dropped)}")

    # -- repair ----------------------------------------------------------------------------------
    def recover(self) -> list[str]:
        return []

    def tidy(self, current: str | None) -> list[str]:
        return []

    def live_release(self) -> Release | None:
        return None

    def serve(self, slot: str) -> str:
        return self._do(f"serve {slot}")

    def park(self, slot: str, *, remove_if_from: str | None = None) -> str:
        return self._do(f"park {slot}" + (" (remove)" if remove_if_from else ""))

    def discard(self, release: Release, *, image: bool) -> str:
        self.calls.append("discard")
        return "discarded"

    # -- password rotation -------------------------------------------------------------------------
    def rotate_password(self, rotation: PasswordRotation, release: Release) -> str:
        rotation.altered = True
        return self._do(f"rotate password for {release.id} in {release.slot}")

    def restore_password(self, rotation: PasswordRotation) -> str:
        self.calls.append("restore password" if rotation.altered else "nothing to restore")
        return "restored"

    def url(self) -> str:
        return "http://localhost:1"

    def leftovers(self) -> list[str]:
        return self.left


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return committed_config(tmp_path, VALID)


def _run(
    config: Config,
    steps: RecordingSteps,
    host: FakeHost,
    monkeypatch: pytest.MonkeyPatch,
    *,
    releases_lock: bool = True,
    events: list[Event] | None = None,
) -> list[Event]:
    """Deploy with ``steps``; the events (also into ``events``, kept when the deploy fails)."""
    bus, events = recording_bus(config, events)
    monkeypatch.setattr(
        "shipyard.deploy.build_image",
        lambda cfg, local, version, rebuild=False: Image(
            tag="shop:x", id="sha256:1", version=version
        ),
    )
    ctx = operation_context(config, host, bus=bus)
    try:
        run_deploy(ctx, steps, DeployOptions(allow_dirty=True))
    finally:
        if releases_lock:
            assert not any(path.endswith("/lock") for path in host.files), "lock left behind"
    return events


OLD_IN_BLUE = Current(slot="blue", release_id="old", switched_at="t")


def _old_in_blue(host: FakeHost) -> StateStore:
    """The state on ``host`` of an environment where release "old" serves from the blue slot."""
    store = StateStore.on_host(host, STATE)
    store.set_current(OLD_IN_BLUE)
    return store


def _serving(store: StateStore) -> Current:
    """What serves according to ``store`` (something must)."""
    current = store.current()
    assert current is not None, "nothing serves"
    return current


def _failed_over_old(
    config: Config,
    monkeypatch: pytest.MonkeyPatch,
    fail_at: str,
    error: type[ShipyardError] = ShipyardError,
) -> tuple[RecordingSteps, StateStore, DeployFailed]:
    """A deploy over release "old" serving from blue whose step ``fail_at`` raises ``error``: its
    steps, the state it left and the ``DeployFailed`` it ended with."""
    steps, host = RecordingSteps(fail_at=fail_at, error=error), FakeHost()
    store = _old_in_blue(host)
    with pytest.raises(DeployFailed) as caught:
        _run(config, steps, host, monkeypatch)
    return steps, store, caught.value


def test_first_deploy_runs_phases_in_order(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    steps, host = RecordingSteps(), FakeHost()
    events = _run(config, steps, host, monkeypatch)
    assert steps.calls == [
        "preflight",
        "deliver",
        "infrastructure",
        "plan",
        "migrate",
        "start blue",
        "gate blue",
        "switch blue",
        "verify",
    ]
    finished = [e.phase for e in events if e.kind == "phase.finished"]
    assert finished == [
        "validate",
        "lock",
        "repair",
        "version",
        "build",
        "deliver",
        "infrastructure",
        "plan",
        "migrate",
        "start",
        "health",
        "switch",
        "verify",
        "record",
    ]
    skipped = [e.phase for e in events if e.kind == "phase.skipped"]
    assert "watch" in skipped  # a first deploy has nothing to switch back to
    assert StateStore.on_host(host, STATE).current() is not None


def test_config_warnings_are_warning_events_of_the_deploy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    yaml = VALID.replace("  user: shop\n", "  user: shop\n  extensions: [postgist]\n")
    config = committed_config(tmp_path, yaml)
    events = _run(config, RecordingSteps(), FakeHost(), monkeypatch)
    warnings = [e.message for e in events if e.kind == "operation.warning"]
    assert warnings == [f"config: {config.warnings[0]}"]
    assert "database.extensions[0]: 'postgist' is not an extension" in warnings[0]


def test_failure_before_switch_removes_candidate_and_keeps_live_slot(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps, store, failed = _failed_over_old(config, monkeypatch, "gate green")
    assert failed.phase == "health"
    assert steps.calls[-3:] == ["gate green", "remove green", "discard"]
    assert not any(c.startswith("switch") for c in steps.calls)
    assert store.current() == OLD_IN_BLUE
    assert store.history()[-1].result == "failed"
    assert store.history()[-1].phase == "health"


def test_a_failed_first_deploy_says_what_it_left_and_how_to_remove_it(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No previous version kept serving: the hint names what the deploy created and left, and
    `shipyard destroy`."""
    steps, host = RecordingSteps(fail_at="gate blue"), FakeHost()
    steps.left = ["database container shop-development-db", "network shop-development"]
    with pytest.raises(DeployFailed) as caught:
        _run(config, steps, host, monkeypatch)
    assert steps.calls[-3:] == ["gate blue", "remove blue", "discard"]
    hint = caught.value.hint or ""
    assert "previous version" not in hint
    assert (
        "it left on " in hint
        and ": database container shop-development-db, network shop-development. "
        "`shipyard destroy development --yes` removes them (`--volumes` deletes the database "
        "volume too)"
        in hint
    )

    # With a version serving, nothing is listed: the previous version kept serving.
    steps, host = RecordingSteps(fail_at="gate green"), FakeHost()
    steps.left = ["database container shop-development-db"]
    _old_in_blue(host)
    with pytest.raises(DeployFailed) as caught:
        _run(config, steps, host, monkeypatch)
    assert "destroy" not in (caught.value.hint or "")


def test_failure_after_switch_switches_back_first(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps, store, _ = _failed_over_old(config, monkeypatch, "verify")
    assert steps.calls[-4:] == ["verify", "switch blue", "remove green", "discard"]
    assert _serving(store).slot == "blue"
    assert store.history()[-1].result == "rolled_back"


def _stop_mode(tmp_path: Path) -> Config:
    return committed_config(
        tmp_path, VALID.replace("proxy:\n", "deploy:\n  old_version: stop\nproxy:\n", 1)
    )


def test_with_old_version_stop_the_old_slot_is_retired_right_after_the_switch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`deploy.old_version: stop`: drained and stopped once the switch is verified, before the
    watch, so two versions never run during the watch window; retired once only."""
    steps, host = RecordingSteps(), FakeHost()
    store = _old_in_blue(host)
    events = _run(_stop_mode(tmp_path), steps, host, monkeypatch)
    assert steps.calls[-5:] == [
        "gate green",
        "switch green",
        "verify",
        "retire blue",
        "watch green",
    ]
    finished = [e.phase for e in events if e.kind == "phase.finished"]
    assert finished[-5:] == ["switch", "verify", "retire", "watch", "record"]
    assert _serving(store).slot == "green"


def test_with_old_version_stop_a_failed_watch_brings_the_stopped_version_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps, store, failed = _failed_over_old(_stop_mode(tmp_path), monkeypatch, "watch green")
    assert failed.after_switch
    assert steps.calls[-5:] == [
        "retire blue",
        "watch green",
        "switch blue",  # switch_back: started and health-gated again first (DockerSteps)
        "remove green",
        "discard",
    ]
    assert _serving(store).slot == "blue"
    assert store.history()[-1].result == "rolled_back"


@pytest.mark.parametrize(
    ("steps", "raised"),
    [
        pytest.param(
            {"fail_at": "gate blue", "fail_cleanup": True},
            RollbackFailed,
            id="failed cleanup is a rollback failure",
        ),
        pytest.param(
            {"fail_at": "preflight", "error": HostUnreachable},
            HostUnreachable,
            id="connection lost before any change is host unreachable",
        ),
    ],
)
def test_the_error_a_failed_deploy_ends_with(
    config: Config,
    monkeypatch: pytest.MonkeyPatch,
    steps: dict[str, Any],
    raised: type[ShipyardError],
) -> None:
    with pytest.raises(raised):
        _run(config, RecordingSteps(**steps), FakeHost(), monkeypatch)


def test_connection_lost_after_the_switch_is_a_failed_deploy_not_a_no_op(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An SSH connection dropping mid-deploy: the switch is undone and the failure recorded, and a
    switch-back that fails too is a rollback failure (exit 7), not "host unreachable"."""
    steps, store, _ = _failed_over_old(config, monkeypatch, "verify", HostUnreachable)
    assert steps.calls[-4:] == ["verify", "switch blue", "remove green", "discard"]
    assert store.history()[-1].result == "rolled_back"

    steps = RecordingSteps(fail_at="verify", error=HostUnreachable, fail_cleanup=True)
    with pytest.raises(RollbackFailed):
        _run(config, steps, FakeHost(), monkeypatch)


class _PortTaken(PortInUse):
    def __init__(self, message: str) -> None:
        super().__init__([f"proxy.http_port: port 18080 on fake is already in use ({message})"])


@pytest.mark.parametrize("step", ["preflight", "infrastructure"])
def test_a_taken_port_stops_the_deploy_as_nothing_changed(
    config: Config, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    """Found at validate (before the lock), or at infrastructure (it was taken during the build):
    the port error itself comes out (exit 3, not a failed deploy); what was built for the deploy
    is forgotten, and nothing is journalled or recorded."""
    steps, host = RecordingSteps(fail_at=step, error=_PortTaken), FakeHost()
    store = StateStore.on_host(host, STATE)
    events: list[Event] = []
    with pytest.raises(PortInUse) as caught:
        _run(config, steps, host, monkeypatch, events=events)
    assert "port 18080 on fake is already in use" in caught.value.message
    assert steps.calls[-1] == ("discard" if step == "infrastructure" else "preflight")
    assert not any(c.startswith(("start", "switch", "plan")) for c in steps.calls)
    assert store.history() == [] and store.intent() is None and store.current() is None
    failed = [e for e in events if e.kind == "deploy.failed"]
    assert [e.error for e in failed] == [caught.value.message]


def test_lock_held_stops_before_any_step(config: Config) -> None:
    steps, host = RecordingSteps(), FakeHost()
    host.files["/state/shop/development/lock"] = (b"", 0o700)
    ctx = operation_context(config, host, deployment_id="d2")
    with pytest.raises(LockHeld):
        run_deploy(ctx, steps, DeployOptions(allow_dirty=True))
    assert steps.calls == ["preflight"]
    assert "/state/shop/development/lock" in host.files  # another deploy's lock is never released


def _release(rid: str, version: str, commit: str) -> Release:
    return Release(
        id=rid,
        version=version,
        commit=commit,
        image=f"shop:{version}",
        image_id="sha256:x",
        slot="blue",
        migration_version=2,
        created_at="t",
        deployed_by="me",
    )


def _choose(releases: list[Release], live: str, to: str | None = None) -> Release:
    """The rollback target with no history (trimmed or removed): by deploy order."""
    current = Current(slot="blue", release_id=live, switched_at="t")
    return choose_rollback(Served(releases, current), to).release


def test_without_history_the_rollback_target_is_the_release_before_the_live_one() -> None:
    releases = [_release(f"r{i}", f"1.0.{i}", f"{i:040d}") for i in range(1, 5)]
    assert _choose(releases, "r4").id == "r3"
    assert _choose(releases, "r3").id == "r2"
    assert _choose(releases, "r4", "1.0.1").id == "r1"
    assert _choose(releases, "r4", "r2").id == "r2"
    assert _choose(releases, "r4", "0" * 39 + "3").id == "r3"


def _served(*operations: tuple[str, str], releases: list[Release]) -> Served:
    """A node's state after ``operations`` (action, release id), each recorded as succeeded."""
    history = [
        succeeded(
            f"op{n}",
            next(r.version for r in releases if r.id == release),
            commit="c" * 40,
            started_at=f"2026-01-01T00:00:{n:02d}Z",
            action=action,
            release_id=release,
        )
        for n, (action, release) in enumerate(operations)
    ]
    live = Current(slot="blue", release_id=operations[-1][1], switched_at="t")
    return Served(releases, live, history)


def test_nodes_roll_back_to_one_version_after_a_rollout_stopped_half_way() -> None:
    """Node a took v2, node b failed and went back to v1: both end on v1 (not a on v1, b on v0)."""
    v0, v1, v2 = (
        replace(
            _release(f"r{i}", f"1.0.{i}", f"{i:040d}"), created_at=f"2026-01-0{i + 1}T00:00:00Z"
        )
        for i in range(3)
    )
    node_a = _served(("deploy", "r0"), ("deploy", "r1"), ("deploy", "r2"), releases=[v0, v1, v2])
    node_b = _served(("deploy", "r0"), ("deploy", "r1"), releases=[v0, v1])
    assert common_rollback_version([("a", node_a), ("b", node_b)]).release.version == "1.0.1"
    assert common_rollback_version([("b", node_b), ("a", node_a)]).release.version == "1.0.1"
    # A node added later knows only v2; the others' history decides.
    node_c = _served(("deploy", "r2"), releases=[v2])
    choice = common_rollback_version([("c", node_c), ("a", node_a)])
    assert choice.release.version == "1.0.1"
    assert choice.why.startswith("the version every node rolls back to: on a, it served before")
    with pytest.raises(StateError):
        common_rollback_version([("a", Served([v0], None))])
    with pytest.raises(StateError, match="no earlier release"):
        common_rollback_version([("c", node_c)])
    # Without history, by deploy order.
    bare = [
        ("a", Served(node_a.releases, node_a.current)),
        ("b", Served(node_b.releases, node_b.current)),
    ]
    assert common_rollback_version(bare).release.version == "1.0.1"


def test_rollback_target_errors_name_the_retained_releases() -> None:
    releases = [_release("r1", "1.0.1", "a" * 40), _release("r2", "1.0.2", "b" * 40)]
    with pytest.raises(StateError, match="no earlier release"):
        _choose(releases, "r1")
    with pytest.raises(StateError, match=r"retained: 1\.0\.1 \(r1\)"):
        _choose(releases, "r2", "9.9.9")
    with pytest.raises(StateError):
        _choose(releases, "r2", "1.0.2")  # the live one is not a rollback target


def test_the_rollback_choice_says_why_and_what_it_passes_over() -> None:
    a, b, c = (_release(r, f"1.0.{n}", f"{n:040d}") for n, r in enumerate("abc"))
    served = _served(
        ("deploy", "a"), ("deploy", "b"), ("rollback", "a"), ("deploy", "c"), releases=[a, b, c]
    )
    choice = choose_rollback(served)
    assert choice.release.id == "a"
    assert choice.why == "it served before 1.0.2, the live release, came in"
    assert choice.notes == (
        "1.0.1 (b), deployed just before 1.0.2, is passed over: rollback op2 replaced it",
    )
    named = choose_rollback(served, "1.0.1")
    assert (named.release.id, named.why) == ("b", "named by --to 1.0.1")
    # History trimmed so that it no longer shows the live release coming in: by deploy order.
    trimmed = Served(served.releases, served.current, served.history[:2])
    assert choose_rollback(trimmed).release.id == "b"
    assert "history does not show how 1.0.2 came to serve" in choose_rollback(trimmed).why
    # History trimmed to start after the first deploy: what served before its oldest release
    # is what was deployed before it.
    older = Served(served.releases, served.current, served.history[1:])
    assert choose_rollback(older).release.id == "a"


# The journal's steps from the candidate's start to the old slot's retirement, as each operation
# that brings a version live writes them.
BRINGING_LIVE = ["start", "health", "switch", "switched", "verified", "watched", "retired"]


class JournalHost(FakeHost):
    """Records every version of the journal written, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[str] = []

    def put(self, path: PurePosixPath, data: bytes, *, mode: int = 0o600) -> None:
        super().put(path, data, mode=mode)
        if path.name == "journal.json":
            self.steps.append(json.loads(data)["step"])


def _intent(step: str, *, previous: bool = True, action: str = "deploy") -> Intent:
    return Intent(
        deployment_id="killed",
        action=action,
        release=replace(_release("killed", "2.0.0", "b" * 40), slot="green"),
        previous=OLD_IN_BLUE if previous else None,
        step=step,
        by="someone@somewhere",
        started_at="2026-01-01T00:00:00Z",
        updated_at="2026-01-01T00:00:01Z",
        fresh_image=True,
    )


def _state_with(host: FakeHost, intent: Intent | None) -> StateStore:
    store = StateStore.on_host(host, STATE)
    store.save_releases([_release("old", "1.0.0", "a" * 40)])
    store.set_current(OLD_IN_BLUE)
    if intent is not None:
        store.write_intent(intent)
    return store


def test_every_step_is_journalled_before_it_runs_and_cleared_once_recorded(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps, host = RecordingSteps(), JournalHost()
    store = _state_with(host, None)
    _run(config, steps, host, monkeypatch)
    assert host.steps == ["begin", "migrate", *BRINGING_LIVE]
    assert store.intent() is None
    assert _serving(store).release_id == "d1"


@pytest.mark.parametrize("step", ["start", "health", "switch", "switched", "verified"])
def test_an_operation_interrupted_before_it_proved_itself_is_undone(
    config: Config, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    steps, host = RecordingSteps(), FakeHost()
    store = _state_with(host, _intent(step))
    _run(config, steps, host, monkeypatch)
    repair = steps.calls[1 : steps.calls.index("deliver")]
    assert repair == ["serve blue", "park green (remove)", "discard"]
    interrupted = next(e for e in store.history() if e.deployment_id == "killed")
    assert interrupted.result == "interrupted"
    assert interrupted.phase == step
    assert "undone: 1.0.0 serves again" in (interrupted.error or "")
    assert store.intent() is None


@pytest.mark.parametrize("step", ["watched", "retired"])
def test_an_operation_interrupted_after_it_proved_itself_is_finished(
    config: Config, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    steps, host = RecordingSteps(fail_at="deliver"), FakeHost()  # stop the new deploy early
    store = _state_with(host, _intent(step))
    with pytest.raises(DeployFailed):
        _run(config, steps, host, monkeypatch)
    assert steps.calls[1:3] == ["serve green", "park blue"]
    assert _serving(store).release_id == "killed"
    assert [r.id for r in store.releases()] == ["old", "killed"]
    interrupted = next(e for e in store.history() if e.deployment_id == "killed")
    assert "finished: 2.0.0 serves" in (interrupted.error or "")


def test_a_first_deploy_interrupted_after_its_switch_began_is_finished(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps, host = RecordingSteps(fail_at="deliver"), FakeHost()
    store = StateStore.on_host(host, STATE)
    store.write_intent(_intent("switch", previous=False))
    with pytest.raises(DeployFailed):
        _run(config, steps, host, monkeypatch)
    assert steps.calls[1] == "serve green"
    assert _serving(store).slot == "green"


def test_when_the_previous_version_cannot_serve_the_proven_candidate_does(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps, host = RecordingSteps(fail_at="serve blue"), FakeHost()
    store = _state_with(host, _intent("switched"))
    _run(config, steps, host, monkeypatch)
    assert steps.calls[1:4] == ["serve blue", "serve green", "park blue"]
    interrupted = next(e for e in store.history() if e.deployment_id == "killed")
    assert "finished" in (interrupted.error or "")


def test_an_operation_interrupted_before_it_started_a_version_is_recorded_and_forgotten(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps, host = RecordingSteps(), FakeHost()
    store = _state_with(host, _intent("migrate"))
    _run(config, steps, host, monkeypatch)
    assert steps.calls[1] == "discard"
    assert not any(c.startswith(("serve", "park")) for c in steps.calls)
    interrupted = next(e for e in store.history() if e.deployment_id == "killed")
    assert interrupted.result == "interrupted"
    assert "had not changed what serves" in (interrupted.error or "")


def test_a_lost_lock_stops_the_operation_without_touching_anything(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another operation took the lock over while this one was paused in its health gate: no
    cleanup runs, nothing is recorded, and the other operation's lock stays."""
    host = FakeHost()
    store = _state_with(host, None)

    class PausedInHealth(RecordingSteps):
        def gate(self, slot: str) -> str:
            self.calls.append(f"gate {slot}")
            owner = PurePosixPath("/state/shop/development/lock/owner.json")
            host.put(owner, json.dumps({"deployment_id": "other", "operation": "deploy"}).encode())
            return "healthy"

    steps = PausedInHealth()
    with pytest.raises(LockLost, match="lost the lock"):
        _run(config, steps, host, monkeypatch, releases_lock=False)
    assert steps.calls[-1] == "gate green"  # no switch, no removal of the candidate
    assert store.history() == []
    assert (
        json.loads(host.files["/state/shop/development/lock/owner.json"][0])["deployment_id"]
        == "other"
    )
    assert store.intent() is not None  # left for whoever holds the lock now


def test_an_interruption_ends_the_deploy_through_its_cleanups(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    class InterruptedInVerify(RecordingSteps):
        def verify(self, release: object) -> str:
            self.calls.append("verify")
            raise Interrupted("interrupted by SIGTERM")

    steps, host = InterruptedInVerify(), FakeHost()
    store = _state_with(host, None)
    with pytest.raises(DeployFailed, match="interrupted by SIGTERM") as caught:
        _run(config, steps, host, monkeypatch)
    assert caught.value.phase == "verify"
    assert steps.calls[-4:] == ["verify", "switch blue", "remove green", "discard"]
    assert store.intent() is None
    assert store.history()[-1].result == "rolled_back"


def test_a_repair_that_cannot_bring_any_version_back_is_a_rollback_failure(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    class NothingServes(RecordingSteps):
        def serve(self, slot: str) -> str:
            self.calls.append(f"serve {slot}")
            raise ShipyardError(f"slot {slot} has no container")

    steps, host = NothingServes(), FakeHost()
    store = _state_with(host, _intent("switched"))
    with pytest.raises(RollbackFailed, match="no version could be brought back"):
        _run(config, steps, host, monkeypatch)
    assert steps.calls[1:3] == ["serve blue", "serve green"]
    assert "deliver" not in steps.calls  # the new deploy stops before changing anything
    assert store.intent() is not None and store.intent().deployment_id == "killed"  # type: ignore[union-attr]


def test_a_journalled_operation_that_still_holds_its_lock_is_in_progress_not_interrupted(
    config: Config,
) -> None:
    from shipyard.providers.docker._status import _interrupted  # noqa: PLC0415

    ctx = operation_context(
        config, LocalHost(), deployment_id="s", root=PurePosixPath(config.root / "state")
    )
    store = ctx.store
    intent = replace(_intent("health"), deployment_id="running")
    store.write_intent(intent)
    holder = store.lock("running", "deploy", ttl=60)
    holder.acquire()
    try:
        assert _interrupted(ctx) is None
    finally:
        holder.release()
    assert _interrupted(ctx) == intent


def test_history_is_written_while_the_lock_is_held(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    class LockWatchingHost(FakeHost):
        def put(self, path: PurePosixPath, data: bytes, *, mode: int = 0o600) -> None:
            if path.name == "history.jsonl":
                assert any(f.endswith("/lock/owner.json") for f in self.files), "unlocked write"
            super().put(path, data, mode=mode)

    host = LockWatchingHost()
    _run(config, RecordingSteps(), host, monkeypatch)
    with pytest.raises(DeployFailed):
        _run(config, RecordingSteps(fail_at="gate green"), host, monkeypatch)
    store = StateStore.on_host(host, STATE)
    assert [e.result for e in store.history()] == ["succeeded", "failed"]


def _operation(
    config: Config,
    host: FakeHost,
    monkeypatch: pytest.MonkeyPatch,
    deployment_id: str,
    steps: RecordingSteps,
    options: DeployOptions | RollbackOptions,
) -> tuple[DeployResult, list[Event]]:
    """A deploy (``DeployOptions``) or rollback on ``host`` as operation ``deployment_id`` with
    ``steps``, its build named after it: the result and the events."""
    built = VersionInfo(deployment_id, deployment_id * 40, "", dirty=False)
    for reader in ("shipyard.deploy.read_version", "shipyard.deploy._checks.read_version"):
        monkeypatch.setattr(reader, lambda *args, **kwargs: built)  # validate's, then reused
    monkeypatch.setattr(
        "shipyard.deploy.build_image",
        lambda cfg, local, version, rebuild=False: Image(
            tag=f"shop:{deployment_id}", id=f"sha256:{deployment_id}", version=version
        ),
    )
    bus, events = recording_bus(config)
    ctx = operation_context(config, host, deployment_id=deployment_id, bus=bus)
    if isinstance(options, DeployOptions):
        return run_deploy(ctx, steps, options), events
    return run_rollback(ctx, steps, options), events


def _operate(
    config: Config,
    host: FakeHost,
    monkeypatch: pytest.MonkeyPatch,
    action: str,
    deployment_id: str,
    *,
    to: str | None = None,
) -> str:
    """Deploy or roll back on ``host`` as operation ``deployment_id``; returns the live release."""
    options = (
        DeployOptions(allow_dirty=True) if action == "deploy" else RollbackOptions(to=to, yes=True)
    )
    result, _ = _operation(config, host, monkeypatch, deployment_id, RecordingSteps(), options)
    return result.release.id


def _deployed(config: Config, monkeypatch: pytest.MonkeyPatch, *releases: str) -> FakeHost:
    """A host that ``releases`` were deployed to in turn, each as the operation of its name."""
    host = FakeHost()
    for release in releases:
        _operate(config, host, monkeypatch, "deploy", release)
    return host


def test_a_rollback_returns_to_what_served_before_the_live_release_not_what_was_rolled_back_from(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """deploy A → deploy B → rollback (A) → deploy C → rollback: A served before C, so A comes
    back; B, the version rolled back from, does not."""
    host = FakeHost()
    assert _operate(config, host, monkeypatch, "deploy", "a") == "a"
    assert _operate(config, host, monkeypatch, "deploy", "b") == "b"
    assert _operate(config, host, monkeypatch, "rollback", "r1") == "a"
    assert _operate(config, host, monkeypatch, "deploy", "c") == "c"
    assert _operate(config, host, monkeypatch, "rollback", "r2") == "a"
    with pytest.raises(StateError, match="no earlier release"):  # nothing served before A
        _operate(config, host, monkeypatch, "rollback", "r3")


def test_rolling_back_again_goes_further_back_past_the_versions_rolled_back_from(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = _deployed(config, monkeypatch, "a", "b", "c")
    assert _operate(config, host, monkeypatch, "rollback", "r1") == "b"
    assert _operate(config, host, monkeypatch, "rollback", "r2") == "a"  # not back to C
    assert _operate(config, host, monkeypatch, "deploy", "d") == "d"
    assert _operate(config, host, monkeypatch, "rollback", "r3") == "a"
    # A release named with --to comes back whatever it replaced; a rollback from it returns to
    # what served before it came back.
    assert _operate(config, host, monkeypatch, "rollback", "r4", to="c") == "c"
    assert _operate(config, host, monkeypatch, "rollback", "r5") == "a"


def test_an_interrupted_deploy_that_was_finished_counts_as_having_served(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = FakeHost()
    store = _state_with(host, _intent("watched"))  # "old" serves, "killed" had proven itself
    store.append_history(
        succeeded(
            "old", "1.0.0", commit="a" * 40, started_at="2026-01-01T00:00:00Z", release_id="old"
        )
    )
    assert _operate(config, host, monkeypatch, "deploy", "c") == "c"  # finishes "killed" first
    assert _operate(config, host, monkeypatch, "rollback", "r1") == "killed"
    assert _operate(config, host, monkeypatch, "rollback", "r2") == "old"


def test_a_rollback_passes_over_releases_no_longer_retained_and_says_so(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = _deployed(config, monkeypatch, "a", "b")
    _operate(config, host, monkeypatch, "rollback", "r1")
    _operate(config, host, monkeypatch, "deploy", "c")
    store = StateStore.on_host(host, STATE)
    store.save_releases([r for r in store.releases() if r.id != "a"])  # A was pruned
    with pytest.raises(StateError, match="no earlier release") as caught:
        _operate(config, host, monkeypatch, "rollback", "r2")  # never B, rolled back from
    assert "a (a) served before c but is no longer retained" in caught.value.message
    assert "passed over, as rollbacks replaced them: b (b)" in caught.value.message


def test_without_history_a_rollback_returns_to_the_release_deployed_before_the_live_one(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = _deployed(config, monkeypatch, "a", "b", "c")
    _operate(config, host, monkeypatch, "rollback", "r1")
    del host.files["/state/shop/development/history.jsonl"]  # trimmed, or removed by hand
    assert _operate(config, host, monkeypatch, "rollback", "r2") == "a"


def test_nodes_roll_back_to_what_served_before_after_an_earlier_rollback(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    hosts = [FakeHost(), FakeHost()]
    for host in hosts:
        _operate(config, host, monkeypatch, "deploy", "a")
        _operate(config, host, monkeypatch, "deploy", "b")
        _operate(config, host, monkeypatch, "rollback", "r1")
        _operate(config, host, monkeypatch, "deploy", "c")
    stores = [StateStore.on_host(h, STATE) for h in hosts]
    nodes = [(f"node{n}", Served.read(store)) for n, store in enumerate(stores)]
    assert common_rollback_version(nodes).release.version == "a"


def _rotate(
    config: Config, steps: RecordingSteps, host: FakeHost
) -> tuple[StateStore, list[Event]]:
    bus, events = recording_bus(config)
    ctx = operation_context(config, host, deployment_id="rot1", bus=bus)
    try:
        run_rotate_password(ctx, steps, RotateOptions())
    finally:
        assert not any(path.endswith("/lock") for path in host.files), "lock left behind"
    return ctx.store, events


def test_a_password_rotation_redeploys_the_live_release_in_the_other_slot(
    config: Config,
) -> None:
    """Under the lock and journalled like a rollback to the live release: the password first,
    then start, health gate, switch, watch and retire; recorded in history."""
    steps, host = RecordingSteps(), JournalHost()
    store = _state_with(host, None)
    _, events = _rotate(config, steps, host)
    assert steps.calls == [
        "preflight",
        "rotate password for old in green",
        "start green",
        "gate green",
        "switch green",
        "verify",
        "watch green",
        "retire blue",
    ]
    # the release it brings back is known before the password changes: "begin" twice
    assert host.steps == ["begin", "begin", *BRINGING_LIVE]
    assert _serving(store).slot == "green"
    assert _serving(store).release_id == "old"
    assert [r.id for r in store.releases()] == ["old"]  # the same release, in another slot
    entry = store.history()[-1]
    assert (entry.action, entry.result, entry.version, entry.slot) == (
        "rotate-password",
        "succeeded",
        "1.0.0",
        "green",
    )
    assert store.intent() is None
    assert events[0].message == "rotate-password of shop to development"


@pytest.mark.parametrize(
    ("fail_at", "undo"),
    [
        ("rotate password for old in green", ["restore password"]),
        ("gate green", ["remove green", "restore password"]),
        ("verify", ["switch blue", "remove green", "restore password"]),
    ],
)
def test_a_failed_rotation_gives_the_role_its_previous_password_back(
    config: Config, fail_at: str, undo: list[str]
) -> None:
    """Before the watch window ends, a failure leaves things as they were: the previous slot
    serves (switched back to if needed) and the role has its previous password again, after
    the candidate is gone. The release is never discarded: it is the live one."""
    steps, host = RecordingSteps(fail_at=fail_at), FakeHost()
    store = _state_with(host, None)
    with pytest.raises(DeployFailed):
        _rotate(config, steps, host)
    assert steps.calls[steps.calls.index(fail_at) + 1 :] == undo
    assert store.current() == OLD_IN_BLUE
    assert [r.id for r in store.releases()] == ["old"]
    entry = store.history()[-1]
    assert (entry.action, entry.result) == (
        "rotate-password",
        "rolled_back" if fail_at == "verify" else "failed",
    )
    assert store.intent() is None


def test_a_rotation_keeps_the_old_version_up_through_the_watch_even_with_old_version_stop(
    tmp_path: Path,
) -> None:
    """Started again after the password changed, the old version could not log in: a rotation
    retires it only after the watch, whatever `deploy.old_version` says."""
    steps, host = RecordingSteps(), JournalHost()
    _state_with(host, None)
    _rotate(_stop_mode(tmp_path), steps, host)
    assert steps.calls[-3:] == ["verify", "watch green", "retire blue"]


def test_a_rotation_with_nothing_deployed_changes_nothing(config: Config) -> None:
    steps, host = RecordingSteps(), FakeHost()
    with pytest.raises(StateError, match="nothing is deployed to development"):
        _rotate(config, steps, host)
    assert steps.calls == ["preflight"]
    assert StateStore.on_host(host, STATE).history() == []


@pytest.mark.parametrize(("step", "serves"), [("begin", None), ("health", "blue")])
def test_an_interrupted_rotation_is_undone_and_says_the_password_may_have_changed(
    config: Config, monkeypatch: pytest.MonkeyPatch, step: str, serves: str | None
) -> None:
    """Killed after the password changed: the previous slot serves alone again, the live
    release is kept, and history says to run the rotation again."""
    steps, host = RecordingSteps(), FakeHost()
    intent = replace(
        _intent(step, action="rotate-password"),
        release=replace(_release("old", "1.0.0", "a" * 40), slot="green"),
        fresh_image=False,
    )
    store = _state_with(host, intent)
    _run(config, steps, host, monkeypatch)
    repair = steps.calls[1 : steps.calls.index("deliver")]
    assert repair == ([f"serve {serves}", "park green (remove)"] if serves else [])
    interrupted = next(e for e in store.history() if e.deployment_id == "killed")
    assert interrupted.action == "rotate-password"
    assert "may have the env file's new password already" in (interrupted.error or "")
    assert "run `shipyard db rotate-password ENV` again" in (interrupted.error or "")
    assert "old" in [r.id for r in store.releases()]


# -- live before the watch, the watch window, the profile ------------------------------------------
def _order(events: list[Event]) -> list[str]:
    """Lifecycle events and finished or skipped phases, in order."""
    return [
        f"{e.kind.split('.')[-1]} {e.phase}" if e.kind.startswith("phase.") else e.kind
        for e in events
        if e.kind in ("phase.finished", "phase.skipped")
        or not e.kind.startswith(("phase.", "operation."))
    ]


def test_live_is_reported_once_the_switch_is_verified_before_the_watch(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = _deployed(config, monkeypatch, "a")
    steps = RecordingSteps()
    _, events = _operation(config, host, monkeypatch, "b", steps, DeployOptions(allow_dirty=True))
    order = _order(events)
    assert order[order.index("deploy.switched") :] == [
        "deploy.switched",
        "finished verify",
        "deploy.live",
        "finished watch",
        "finished retire",
        "finished record",
        "deploy.completed",
    ]
    live = next(e for e in events if e.kind == "deploy.live")
    assert live.data == {
        "slot": "green",
        "previous_slot": "blue",
        "url": "http://localhost:1",
        "watch_s": 30.0,
    }
    assert "serving at http://localhost:1" in live.message
    assert "watching it for 30s; blue stands by" in live.message
    assert steps.watched == [30.0]  # deploy.watch


def test_no_watch_returns_after_verify_with_the_old_version_retired(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = _deployed(config, monkeypatch, "a")
    steps = RecordingSteps()
    _, events = _operation(
        config, host, monkeypatch, "b", steps, DeployOptions(allow_dirty=True, watch=0)
    )
    assert steps.calls[-3:] == ["switch green", "verify", "retire blue"]
    assert steps.watched == []
    skipped = next(e for e in events if e.kind == "phase.skipped" and e.phase == "watch")
    assert skipped.message == "--no-watch"
    live = next(e for e in events if e.kind == "deploy.live")
    assert "not watched (--no-watch): blue is retired now" in live.message
    assert live.data["watch_s"] == 0
    history = StateStore.on_host(host, STATE).history()
    assert history[-1].result == "succeeded" and "watch" not in history[-1].steps


def test_a_rollback_is_watched_for_deploy_rollback_watch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shorter by default (10s) than a deploy's (30s); configurable; --no-watch skips it."""
    config = committed_config(tmp_path, VALID)
    assert (config.deploy.watch, config.deploy.rollback_watch) == (30.0, 10.0)
    host = _deployed(config, monkeypatch, "a", "b")
    steps = RecordingSteps()
    _operation(config, host, monkeypatch, "r1", steps, RollbackOptions(yes=True))
    assert steps.watched == [10.0]

    configured = committed_config(
        tmp_path, VALID.replace("proxy:\n", "deploy:\n  rollback_watch: 3s\nproxy:\n", 1)
    )
    steps = RecordingSteps()
    _operation(configured, host, monkeypatch, "r2", steps, RollbackOptions(to="b", yes=True))
    assert steps.watched == [3.0]

    steps = RecordingSteps()
    _, events = _operation(
        configured, host, monkeypatch, "r3", steps, RollbackOptions(to="a", yes=True, watch=0)
    )
    assert steps.watched == []
    assert any(e.kind == "phase.skipped" and e.phase == "watch" for e in events)


def test_every_operation_ends_with_its_profile(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One ``operation.profile`` event, last: each phase that ran with its duration, in order,
    the total, and when the new version was live (none for a failed operation)."""
    host = FakeHost()
    _, events = _operation(
        config, host, monkeypatch, "a", RecordingSteps(), DeployOptions(allow_dirty=True)
    )
    profile = events[-1]
    assert profile.kind == "operation.profile"
    assert [kind for kind in (e.kind for e in events) if kind == "operation.profile"] == [
        "operation.profile"
    ]
    phases = [p["phase"] for p in profile.data["phases"]]
    finished = [e.phase for e in events if e.kind == "phase.finished"]
    assert phases == finished
    assert all(p["duration_s"] >= 0 for p in profile.data["phases"])
    assert profile.data["total_s"] >= profile.data["live_s"] > 0
    assert "validate " in profile.message and "total " in profile.message

    failed: list[Event] = []
    with pytest.raises(DeployFailed):
        _run(config, RecordingSteps(fail_at="gate green"), host, monkeypatch, events=failed)
    assert failed[-1].kind == "operation.profile"
    assert failed[-1].data["live_s"] is None
    assert failed[-1].data["phases"][-1]["phase"] == "health"  # the failed phase, timed too
