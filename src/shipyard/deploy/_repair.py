"""Repair: what every operation that takes the lock does first, and `shipyard repair` alone.

An operation that changes what serves writes its intent (``state.Intent``) on the host before
each step and clears it once recorded or undone. When the next operation finds one, the
operation behind it was interrupted (killed, a lost connection, a cleanup that failed): it is
finished when its new version had proven itself (``Intent.proven``) and undone otherwise, and the
outcome is recorded in history. With no intent, what runs is compared with the state: a live
container stopped outside shipyard is started, a switch cut short finished, a version running
beside the live one stopped, and ``current.json`` made to name what the proxy really routes to.
The golang-migrate containers of interrupted operations are read (and the schema made clean
where a failed file left nothing behind) in both cases, and a maintenance mode an interrupted
``deploy --maintenance`` turned on is turned off (``_maintenance``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from shipyard.deploy._maintenance import MaintenanceMode, end_left_maintenance
from shipyard.errors import RollbackFailed, ShipyardError
from shipyard.state import Current, HistoryEntry, Intent, Release, StateStore, deployer, now_iso

__all__ = ["RepairSteps", "repair"]


class RepairSteps(MaintenanceMode, Protocol):
    """What a provider does to bring an environment back to one serving version."""

    def recover(self) -> list[str]: ...

    def serve(self, slot: str) -> str: ...

    def park(self, slot: str, *, remove_if_from: str | None = None) -> str: ...

    def tidy(self, current: str | None) -> list[str]: ...

    def live_release(self) -> Release | None: ...

    def discard(self, release: Release, *, image: bool) -> str: ...


def repair(
    store: StateStore,
    steps: RepairSteps,
    *,
    deployment_id: str,
    record: Callable[[Release], str],
    note: Callable[[str], None],
    took_over: dict[str, Any] | None = None,
) -> str:
    """Bring the environment back to exactly one serving version and the state in line with it.
    ``record`` records a release as live (as a deploy's record phase does); ``note`` reports
    each action; ``took_over``: the owner record of a dead or stale lock this operation took
    over (recorded in history as interrupted when it left no journal). Returns a summary."""
    actions = steps.recover()
    for action in actions:
        note(f"repair: {action}")
    intent = store.intent()
    if intent is not None and intent.started:
        done = _settle(store, steps, intent, deployment_id=deployment_id, record=record, note=note)
    else:
        current = store.current()
        done = steps.tidy(current.slot if current else None)
        done += _align_state(store, steps)
        for action in done:
            note(f"repair: {action}")
        if intent is not None:
            done += _forget(store, steps, intent, deployment_id=deployment_id)
        elif took_over is not None:
            _record_lost_holder(store, took_over, deployment_id=deployment_id)
    ended = end_left_maintenance(store, steps, deployment_id=deployment_id)
    if ended is not None:
        note(f"repair: {ended}")
        done.append(ended)
    actions += done
    if not actions:
        return "nothing to repair"
    return f"{len(actions)} action(s): " + "; ".join(actions)


def _settle(
    store: StateStore,
    steps: RepairSteps,
    intent: Intent,
    *,
    deployment_id: str,
    record: Callable[[Release], str],
    note: Callable[[str], None],
) -> list[str]:
    """Finish or undo the interrupted operation ``intent`` describes."""
    started = time.monotonic()
    assert intent.release is not None  # noqa: S101 — only started intents are settled
    candidate = intent.release.slot
    previous = intent.previous.slot if intent.previous else None
    note(
        f"repair: {intent.action} {intent.deployment_id} of {intent.release.version} by "
        f"{intent.by} was interrupted at step {intent.step!r}; "
        + ("finishing it" if intent.proven else "undoing it")
    )
    # Undoing brings the previous version back; only if that fails is the candidate (health-gated
    # again) better than nothing. Before a first deploy nothing served: there is nothing to undo to.
    if intent.proven:
        order = [candidate, previous]
    else:
        order = [previous, candidate] if previous is not None else []
    done: list[str] = []
    served: str | None = None
    problems: list[str] = []
    for slot in (s for s in order if s is not None):
        try:
            done.append(steps.serve(slot))
        except ShipyardError as exc:
            problems.append(f"slot {slot}: {exc.message}")
            continue
        served = slot
        break
    if served is None and previous is not None:
        raise RollbackFailed(
            f"interrupted {intent.action} {intent.deployment_id}: no version could be brought "
            "back to serve: " + "; ".join(problems),
            hint="check `shipyard status ENV` and `docker ps -a`; then deploy again",
        )
    if served == candidate:
        if previous is not None and previous != candidate:
            done.append(steps.park(previous))
        done.append(record(intent.release))
        outcome = f"finished: {intent.release.version} serves"
    else:
        done += _undo(store, steps, intent)
        live = store.release(intent.previous.release_id) if intent.previous else None
        outcome = (
            f"undone: {live.version if live else 'the previous version'} serves again"
            if intent.previous
            else "undone: nothing was serving before it"
        ) + _PASSWORD_LEFT.get(intent.action, "")
    for action in done:
        note(f"repair: {action}")
    if not any(e.deployment_id == intent.deployment_id for e in store.history()):
        store.append_history(
            _interrupted_entry(
                intent,
                f"{outcome} (repaired by {deployment_id})",
                finished=served == candidate,
                duration=time.monotonic() - started,
            )
        )
    store.clear_intent()
    return [*done, f"interrupted {intent.action} {intent.deployment_id} {outcome}"]


# What an undone operation of this kind may leave behind that the repair cannot give back.
_PASSWORD_LEFT = {
    "rotate-password": "; the database role may have the env file's new password already, which "
    "the version serving does not use for new connections: run `shipyard db rotate-password ENV` "
    "again",
}


def _interrupted_entry(
    intent: Intent, outcome: str, *, finished: bool, duration: float
) -> HistoryEntry:
    release = intent.release
    return HistoryEntry(
        deployment_id=intent.deployment_id,
        action=intent.action,
        result="interrupted",
        version=release.version if release else "-",
        commit=release.commit if release else "-",
        slot=release.slot if release else "-",
        started_at=intent.started_at,
        duration_s=round(duration, 3),
        by=intent.by,
        phase=intent.step,
        error=f"interrupted at step {intent.step!r}; {outcome}",
        release_id=release.id if finished and release else None,
        steps=[],
    )


def _forget(
    store: StateStore, steps: RepairSteps, intent: Intent, *, deployment_id: str
) -> list[str]:
    """An operation interrupted before it started its version: nothing serves differently; its
    release (if it had one) is forgotten and it is recorded as interrupted."""
    done = []
    if intent.release is not None and intent.action == "deploy":
        done.append(steps.discard(intent.release, image=intent.fresh_image))
    outcome = "it had not changed what serves" + _PASSWORD_LEFT.get(intent.action, "")
    if not any(e.deployment_id == intent.deployment_id for e in store.history()):
        store.append_history(
            _interrupted_entry(
                intent, f"{outcome} (repaired by {deployment_id})", finished=False, duration=0.0
            )
        )
    store.clear_intent()
    return [*done, f"interrupted {intent.action} {intent.deployment_id}: {outcome}"]


def _record_lost_holder(store: StateStore, owner: dict[str, Any], *, deployment_id: str) -> None:
    """History for an operation whose lock was taken over before it journalled anything."""
    lost = str(owner.get("deployment_id", "unknown"))
    if any(e.deployment_id == lost for e in store.history()):
        return
    store.append_history(
        HistoryEntry(
            deployment_id=lost,
            action=str(owner.get("operation", "unknown")),
            result="interrupted",
            version="-",
            commit="-",
            slot="-",
            started_at=str(owner.get("started_at", "")),
            duration_s=0.0,
            by=str(owner.get("by", "unknown")),
            phase="lock",
            error=f"its lock was taken over by {deployment_id}; it had changed nothing",
        )
    )


def _undo(store: StateStore, steps: RepairSteps, intent: Intent) -> list[str]:
    """The candidate of an undone operation out of service (removed if it created it), a
    deploy's release forgotten, and the state naming the previous release again."""
    assert intent.release is not None  # noqa: S101
    done = [steps.park(intent.release.slot, remove_if_from=intent.deployment_id)]
    if intent.action == "deploy":
        done.append(steps.discard(intent.release, image=intent.fresh_image))
    if intent.previous is not None:
        store.set_current(intent.previous)
    return done


def _align_state(store: StateStore, steps: RepairSteps) -> list[str]:
    """Make ``current.json`` name the release the proxy routes to."""
    live = steps.live_release()
    current = store.current()
    if live is None:
        if current is not None:
            return [
                f"nothing serves, although the state says slot {current.slot} does: "
                "deploy or roll back to bring a version back"
            ]
        return []
    if current is not None and (current.slot, current.release_id) == (live.slot, live.id):
        return []
    releases = store.releases()
    if not any(r.id == live.id for r in releases):
        store.save_releases([*releases, live])
    store.set_current(Current(slot=live.slot, release_id=live.id, switched_at=now_iso()))
    said = f"slot {current.slot} ({current.release_id})" if current else "nothing"
    return [f"recorded what serves: {live.version} in slot {live.slot} (the state said {said})"]


def repair_entry(
    deployment_id: str, summary: str, started_at: str, duration: float
) -> HistoryEntry:
    """The history line of `shipyard repair` itself."""
    return HistoryEntry(
        deployment_id=deployment_id,
        action="repair",
        result="succeeded",
        version="-",
        commit="-",
        slot="-",
        started_at=started_at,
        duration_s=round(duration, 3),
        by=deployer(),
        steps=[summary],
    )
