"""The operations' declared phases: what ``Phases`` runs, what a plan may list, what a provider
must implement."""

from __future__ import annotations

import inspect
import io

import pytest
from rich.console import Console

from shipyard.deploy import (
    DEPLOY,
    PIPELINES,
    REPAIR,
    ROLLBACK,
    ROTATE_PASSWORD,
    DeploySteps,
    Phases,
    PlanStep,
    RotationSteps,
    UndeclaredPhase,
    planned,
)
from shipyard.events import Bus, ConsoleSink, Event, EventKind
from shipyard.providers.docker import DockerSteps
from shipyard.secrets import Masker


def _phases(pipeline: object) -> tuple[Phases, list[Event]]:
    events: list[Event] = []
    bus = Bus(Masker())
    bus.subscribe(events.append)
    return Phases(
        bus=bus, deployment_id="d1", app="shop", environment="prod", pipeline=pipeline
    ), events  # type: ignore[arg-type]


def _run(phases: Phases, *names: str) -> None:
    for name in names:
        phases.run(name, lambda: "done", summary=str)


def test_a_phase_its_operation_does_not_declare_is_refused_before_it_runs() -> None:
    phases, events = _phases(ROLLBACK)
    ran: list[str] = []
    with pytest.raises(UndeclaredPhase, match="rollback: phase 'build' not declared"):
        phases.run("build", lambda: ran.append("build"))
    assert ran == []
    assert events == []


def test_a_phase_out_of_its_declared_order_is_refused() -> None:
    phases, _ = _phases(DEPLOY)
    _run(phases, "validate", "lock", "repair", "version", "build", "deliver")
    with pytest.raises(UndeclaredPhase, match="phase 'version' declared at"):
        _run(phases, "version")
    # A skipped phase takes its place too: nothing declared before it runs after it.
    phases.skip("snapshot", "no migrations pending")
    with pytest.raises(UndeclaredPhase):
        _run(phases, "plan")


@pytest.mark.parametrize(
    ("mode", "order"),
    [
        ("stop", ["switch", "verify", "retire", "watch", "after_switch", "record"]),
        ("standby", ["switch", "verify", "watch", "after_switch", "retire", "record"]),
    ],
)
def test_retire_runs_at_either_of_its_declared_places(mode: str, order: list[str]) -> None:
    phases, _ = _phases(DEPLOY)
    _run(phases, "start", "health", *order)
    assert phases.completed[-len(order) :] == order
    assert [spec.when for spec in DEPLOY.phases if spec.name == "retire"] == [
        "deploy.old_version: stop",
        "deploy.old_version: standby",
    ]


def test_on_failure_hooks_run_wherever_the_operation_failed() -> None:
    for failed_after in ("repair", "health", "watch"):
        phases, _ = _phases(DEPLOY)
        names = DEPLOY.names()
        _run(phases, *names[: names.index(failed_after) + 1])
        _run(phases, "on_failure")
        assert phases.completed[-1] == "on_failure"


def test_whether_the_target_changed_and_the_point_of_no_return_come_from_the_declaration() -> None:
    phases, _ = _phases(DEPLOY)
    _run(phases, "validate", "lock", "repair", "version", "build", "deliver")
    assert not phases.changed_anything
    _run(phases, "infrastructure")
    assert phases.changed_anything
    _run(phases, "plan", "migrate", "start", "health")
    assert not phases.past_no_return
    _run(phases, "switch")
    assert phases.past_no_return


def test_a_phase_that_runs_before_the_lock_is_not_fenced() -> None:
    phases, _ = _phases(DEPLOY)
    fenced: list[str] = []
    phases.guard = lambda: fenced.append(phases.running or "")
    _run(phases, "validate", "lock", "repair")
    assert fenced == ["repair"]


def test_a_phase_started_event_says_what_the_phase_does() -> None:
    phases, events = _phases(DEPLOY)
    _run(phases, "validate")
    started = next(e for e in events if e.kind == EventKind.PHASE_STARTED)
    assert started.message == DEPLOY.spec("validate").does != ""


def test_a_plan_is_held_to_the_declared_order() -> None:
    ok = [
        PlanStep("lock", "held"),
        PlanStep("build", "build shop:abc"),
        PlanStep("infrastructure", "create network"),
        PlanStep("infrastructure", "start the database"),
        PlanStep("switch", "route to blue"),
        PlanStep("retire", "stop green"),
        PlanStep("watch", "watch 30s"),
        PlanStep("record", "forget release 1"),
    ]
    assert planned(DEPLOY, ok) == ok
    with pytest.raises(UndeclaredPhase):
        planned(DEPLOY, [PlanStep("switch", "route"), PlanStep("build", "build")])
    with pytest.raises(UndeclaredPhase):
        planned(DEPLOY, [PlanStep("choose", "bring back 1.0")])  # a rollback's phase


def _methods(protocol: type) -> set[str]:
    return {
        name
        for name, member in vars(protocol).items()
        if inspect.isfunction(member) and not name.startswith("_")
    }


def test_the_docker_steps_implement_every_capability_the_operations_call() -> None:
    capabilities = {
        spec.capability
        for pipeline in PIPELINES.values()
        for spec in pipeline.phases
        if spec.capability is not None
    }
    assert len(capabilities) >= 8  # one small protocol per concern
    for capability in capabilities:
        assert capability in RotationSteps.__mro__ or capability in DeploySteps.__mro__
        missing = _methods(capability) - set(dir(DockerSteps))
        assert not missing, f"{capability.__name__}: {sorted(missing)}"


def test_every_operation_is_declared_once_with_its_point_of_no_return() -> None:
    assert set(PIPELINES) == {"deploy", "rollback", "rotate-password", "repair"}
    for pipeline in (DEPLOY, ROLLBACK, ROTATE_PASSWORD):
        assert pipeline.no_return == "switch"
        names = pipeline.names()
        assert names[:3] == ["validate", "lock", "repair"]
        assert names.index("health") < names.index("switch") < names.index("verify")
    assert REPAIR.names() == ["lock", "repair"]
    assert REPAIR.no_return is None


def test_an_operation_announces_its_declared_phases_on_the_console() -> None:
    assert DEPLOY.outline() == [
        "validate",
        "lock",
        "repair",
        "version",
        "[ci]",
        "build",
        "deliver",
        "infrastructure",
        "plan",
        "[snapshot]",
        "[maintenance_on]",
        "migrate",
        "start",
        "health",
        "switch",
        "verify",
        "[maintenance_off]",
        "[watch]",
        "[retire]",
        "record",
    ]
    assert ROLLBACK.outline()[3] == "choose"
    out = io.StringIO()
    sink = ConsoleSink(Console(file=out, width=400, color_system=None))
    sink(
        Event(
            kind=EventKind.ROLLBACK_STARTED,
            deployment_id="d1",
            app="shop",
            environment="prod",
            message="rollback of shop to prod",
            data={"phases": ROLLBACK.outline()},
        )
    )
    assert out.getvalue().strip() == (
        "rollback of shop to prod: validate → lock → repair → choose → start → health → switch "
        "→ verify → [watch] → [retire] → record"
    )
