"""Each operation's phases, declared once.

A declaration lists an operation's phases in the order they run: what each does, the capability
(``deploy._steps``) it calls, whether it runs before the lock is held, whether completing it
changes what runs on the target, and which phase is the point of no return. ``Phases`` refuses
to run a phase its operation does not declare, or out of its order; the progress display, the
deployment log and ``plan`` read the same declaration. A phase may be declared at two places
(``retire``, by ``deploy.old_version``): a run takes the first place after the phase before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shipyard.deploy._maintenance import MaintenanceMode
from shipyard.deploy._repair import RepairSteps
from shipyard.deploy._steps import (
    Candidates,
    Delivery,
    Infrastructure,
    Observation,
    Retention,
    Rotation,
    Schema,
    Traffic,
)


class Runs(StrEnum):
    """When a phase runs."""

    ALWAYS = "always"
    SOMETIMES = "sometimes"  # only when its condition holds (``PhaseSpec.when``)
    AFTERWARDS = "afterwards"  # once the operation has ended or failed, in no fixed place


@dataclass(frozen=True)
class PhaseSpec:
    """One declared phase."""

    name: str
    does: str
    # The provider capability it calls (``None``: the deploy package does it itself).
    capability: type | None = None
    locked: bool = True  # runs while the operation holds the lock
    changes: bool = True  # once it completes, the target's stack is no longer as it was
    runs: Runs = Runs.ALWAYS
    when: str = ""  # the condition of a phase that runs sometimes


class UndeclaredPhase(RuntimeError):
    """A phase run that its operation's declaration does not list there: a bug in shipyard."""


@dataclass(frozen=True)
class Pipeline:
    """An operation's phases in order, and its point of no return: once that phase completes, a
    failure switches back to the previous version instead of removing the candidate."""

    operation: str
    phases: tuple[PhaseSpec, ...]
    no_return: str | None = None

    def place(self, name: str, after: int) -> int:
        """Where ``name`` runs next: its first declared place after place ``after`` (-1: none
        yet), or anywhere for a phase that runs afterwards."""
        for index, spec in enumerate(self.phases):
            if spec.name == name and (index > after or spec.runs is Runs.AFTERWARDS):
                return index
        declared = [i for i, spec in enumerate(self.phases) if spec.name == name]
        where = (
            f"declared at {declared}, not after {self.phases[after].name!r}"
            if declared
            else "not declared"
        )
        raise UndeclaredPhase(f"{self.operation}: phase {name!r} {where}")

    def spec(self, name: str) -> PhaseSpec:
        return self.phases[self.place(name, -1)]

    def outline(self) -> list[str]:
        """The phases as the progress display announces them: in order, a phase that runs only
        under a condition in brackets, hooks and what runs afterwards left out; a phase declared
        at two places is named at its last."""
        shown = [
            spec
            for spec in self.phases
            if spec.runs is not Runs.AFTERWARDS and spec.when != "hooks"
        ]
        return [
            f"[{spec.name}]" if spec.runs is Runs.SOMETIMES else spec.name
            for index, spec in enumerate(shown)
            if all(later.name != spec.name for later in shown[index + 1 :])
        ]

    def names(self) -> list[str]:
        """The phases' names in order, each once."""
        return list(dict.fromkeys(spec.name for spec in self.phases))


_PREPARE = (
    PhaseSpec(
        "validate",
        "every check of `shipyard check`: config, env file, tools, the target",
        Delivery,
        locked=False,
        changes=False,
    ),
    PhaseSpec(
        "lock", "take the environment's lock (or wait --lock-wait)", locked=False, changes=False
    ),
    PhaseSpec(
        "repair",
        "finish or undo an interrupted operation; one version serves",
        RepairSteps,
        changes=False,
    ),
)

_GO_LIVE = (
    PhaseSpec("start", "start the version beside the live one, taking no traffic", Candidates),
    PhaseSpec("health", "the health gate: every check passes its rounds", Candidates),
    PhaseSpec(
        "before_switch",
        "hooks.before_switch (a failure stops here)",
        when="hooks",
        runs=Runs.SOMETIMES,
    ),
    PhaseSpec("switch", "send every new request to the new version (point of no return)", Traffic),
    PhaseSpec("verify", "the proxy serves the new version at every endpoint", Observation),
    PhaseSpec(
        "retire",
        "drain and stop the previous version, kept for rollback",
        Traffic,
        runs=Runs.SOMETIMES,
        when="deploy.old_version: stop",
    ),
    PhaseSpec(
        "watch",
        "health and error rate for the watch window; a failure switches back",
        Observation,
        runs=Runs.SOMETIMES,
        when="a previous version and a watch window",
    ),
    PhaseSpec(
        "after_switch",
        "hooks.after_switch (a failure only warns)",
        when="hooks",
        runs=Runs.SOMETIMES,
    ),
    PhaseSpec(
        "retire",
        "drain and stop the previous version, kept for rollback",
        Traffic,
        runs=Runs.SOMETIMES,
        when="deploy.old_version: standby",
    ),
    PhaseSpec("record", "record the release as live; prune old releases", Retention),
)

_AFTERWARDS = (
    PhaseSpec(
        "after_deploy",
        "hooks.after_deploy, after the lock is released",
        when="hooks",
        runs=Runs.SOMETIMES,
    ),
    PhaseSpec(
        "on_failure",
        "hooks.on_failure, once a failure is undone",
        runs=Runs.AFTERWARDS,
        when="hooks",
    ),
)


@dataclass(frozen=True)
class PlanStep:
    """One action an operation would take, in the phase that would take it."""

    phase: str
    action: str


def planned(pipeline: Pipeline, steps: list[PlanStep]) -> list[PlanStep]:
    """A provider's plan, checked against the operation's declaration: every step in a
    declared phase, in the declared order (``UndeclaredPhase`` otherwise, a bug in the
    provider)."""
    place = -1
    for step in steps:
        place = max(place, pipeline.place(step.phase, place - 1))
    return steps


# ``deploy --maintenance``: on just before the migrations, off once the switch is verified.
_MAINTENANCE_ON = PhaseSpec(
    "maintenance_on",
    "maintenance mode on: the proxy answers 503 but the health paths (--maintenance)",
    MaintenanceMode,
    runs=Runs.SOMETIMES,
    when="--maintenance",
)
_MAINTENANCE_OFF = PhaseSpec(
    "maintenance_off",
    "maintenance mode off: requests reach the new version (--maintenance)",
    MaintenanceMode,
    runs=Runs.SOMETIMES,
    when="--maintenance",
)


def _after(phases: tuple[PhaseSpec, ...], name: str, spec: PhaseSpec) -> tuple[PhaseSpec, ...]:
    """``phases`` with ``spec`` right after the first phase ``name``."""
    index = next(i for i, p in enumerate(phases) if p.name == name)
    return (*phases[: index + 1], spec, *phases[index + 1 :])


DEPLOY = Pipeline(
    "deploy",
    (
        *_PREPARE,
        PhaseSpec("version", "the source's version and commit (a clean tree)", changes=False),
        PhaseSpec(
            "ci",
            "CI passed for the commit",
            changes=False,
            runs=Runs.SOMETIMES,
            when="deploy.require_ci",
        ),
        PhaseSpec(
            "before_deploy",
            "hooks.before_deploy (a failure stops here)",
            when="hooks",
            runs=Runs.SOMETIMES,
        ),
        PhaseSpec("build", "build the image, or reuse the one built for the commit", changes=False),
        PhaseSpec("deliver", "the image onto the target", Delivery, changes=False),
        PhaseSpec("infrastructure", "network, proxy, database and its extensions", Infrastructure),
        PhaseSpec(
            "plan", "pending migrations, their lint, whether to snapshot", Schema, changes=False
        ),
        PhaseSpec(
            "snapshot",
            "a verified snapshot of the database",
            Schema,
            changes=False,
            runs=Runs.SOMETIMES,
            when="migrations pending",
        ),
        _MAINTENANCE_ON,
        PhaseSpec("migrate", "apply the migrations, then the release commands", Schema),
        *_after(_GO_LIVE, "verify", _MAINTENANCE_OFF),
        *_AFTERWARDS,
    ),
    no_return="switch",
)

ROLLBACK = Pipeline(
    "rollback",
    (
        *_PREPARE,
        PhaseSpec(
            "choose",
            "the release to bring back, and whether the schema is newer than it",
            Schema,
            changes=False,
        ),
        *_GO_LIVE,
        *_AFTERWARDS,
    ),
    no_return="switch",
)

ROTATE_PASSWORD = Pipeline(
    "rotate-password",
    (
        *_PREPARE,
        PhaseSpec("password", "give the database role the env file's password", Rotation),
        *_GO_LIVE,
        *_AFTERWARDS,
    ),
    no_return="switch",
)

REPAIR = Pipeline("repair", _PREPARE[1:])

# No phases: what ``Phases`` runs when it only emits events.
NO_PHASES = Pipeline("events", ())

PIPELINES = {p.operation: p for p in (DEPLOY, ROLLBACK, ROTATE_PASSWORD, REPAIR)}
