"""Which release a rollback brings back, and why: one rule for `rollback`, `plan --rollback` and
every node of an environment.

A rollback returns to the release that served before the live one came in, and rolling back
again keeps going back: each bare rollback undoes the newest change still in effect, so the
releases a rollback replaced are never brought back by another one (only by ``--to``). The
sequence of what served is read from history: the deploys and rollbacks that succeeded, and the
interrupted ones that were finished (``_repair``). A release no longer retained is passed over
(and said so). When history does not show how the live release came to serve (trimmed after
``deploy.history_days``, removed, or the state recorded by a repair), the release deployed
before the live one is brought back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from shipyard.errors import StateError
from shipyard.state import Current, HistoryEntry, Release, StateStore

__all__ = ["RULE", "RollbackChoice", "Served", "choose_rollback", "common_rollback_version"]

RULE = (
    "a rollback returns to the release that served before the live one came in; rolling back "
    "again goes further back, past the releases rollbacks replaced (name one with --to to bring "
    "it back)"
)

_SHORT_SHA = 7  # a commit prefix shorter than this is ambiguous


@dataclass(frozen=True)
class Served:
    """What one node's state says serves and served: its retained releases (deploy order), the
    live one, and its history (oldest first)."""

    releases: list[Release]
    current: Current | None
    history: list[HistoryEntry] = field(default_factory=list)

    @staticmethod
    def read(store: StateStore) -> Served:
        return Served(store.releases(), store.current(), store.history())


@dataclass(frozen=True)
class RollbackChoice:
    """The release a rollback brings back, why, and what was passed over on the way."""

    release: Release
    why: str
    notes: tuple[str, ...] = ()


@dataclass
class _Timeline:
    """What served, read from history: ``stack`` holds the releases still in effect (the live
    one last); a deploy pushes its release, a rollback takes the stack back to its release."""

    stack: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)  # every release history shows serving
    replaced: dict[str, str] = field(default_factory=dict)  # release id → the rollback's id
    versions: dict[str, str] = field(default_factory=dict)  # release id → its version


def _timeline(history: Sequence[HistoryEntry]) -> _Timeline:
    served = _Timeline()
    for entry in history:
        finished = entry.result == "succeeded" or (
            entry.result == "interrupted" and entry.release_id is not None
        )
        if entry.action not in ("deploy", "rollback") or not finished or not entry.release_id:
            continue
        release = entry.release_id
        served.versions[release] = entry.version
        if entry.action == "deploy":
            served.stack.append(release)
        elif release in served.stack:
            back = served.stack.index(release) + 1
            for undone in served.stack[back:]:
                served.replaced[undone] = entry.deployment_id
            del served.stack[back:]
        elif release in served.seen:  # one a rollback had replaced, named with --to
            served.stack.append(release)
        else:  # deployed before the oldest line kept: everything history shows came after it
            for undone in served.stack:
                served.replaced[undone] = entry.deployment_id
            served.stack = [release]
        served.seen.add(release)
    return served


def choose_rollback(
    served: Served, to: str | None = None, *, why: str | None = None
) -> RollbackChoice:
    """The release a rollback brings back: the one named by ``to`` (a version, release id or
    commit prefix of a retained release other than the live one; ``why`` says why it was named),
    else the one the rule above gives. ``StateError`` when there is none."""
    if served.current is None:
        raise StateError("nothing is deployed: nothing to roll back")
    live_id = served.current.release_id
    if to is not None:
        return RollbackChoice(_named(served.releases, live_id, to), why or f"named by --to {to}")
    retained = {r.id: r for r in served.releases}
    live = retained.get(live_id)
    live_name = live.version if live is not None else f"release {live_id}"
    timeline = _timeline(served.history)
    if not timeline.stack or timeline.stack[-1] != live_id:
        return RollbackChoice(
            _deployed_before(served.releases, live_id),
            f"it was deployed before {live_name}, the live release (history does not show how "
            f"{live_name} came to serve: it was trimmed, removed, or a repair recorded what serves)",
        )
    notes: list[str] = []
    for earlier in reversed(timeline.stack[:-1]):
        found = retained.get(earlier)
        if found is None:
            notes.append(
                f"{timeline.versions.get(earlier, '?')} ({earlier}) served before {live_name} but "
                "is no longer retained"
            )
            continue
        notes += _passed_over(served.releases, live_id, live_name, found, timeline)
        return RollbackChoice(
            found, f"it served before {live_name}, the live release, came in", tuple(notes)
        )
    # History starts at the oldest release it shows: what served before that was deployed before.
    older = [r for r in served.releases if r.id not in timeline.seen and r.id != live_id]
    if older:
        return RollbackChoice(
            older[-1],
            f"it was deployed before the oldest release history shows serving ({timeline.stack[0]})",
            tuple(notes),
        )
    replaced = ", ".join(
        f"{r.version} ({r.id})" for r in served.releases if r.id in timeline.replaced
    )
    raise StateError(
        "no earlier release is retained: nothing to roll back to"
        + "".join(f"; {note}" for note in notes)
        + (f"; passed over, as rollbacks replaced them: {replaced}" if replaced else ""),
        hint="bring a retained release back by name with `shipyard rollback ENV --to VERSION`",
    )


def _passed_over(
    releases: list[Release], live_id: str, live_name: str, chosen: Release, timeline: _Timeline
) -> list[str]:
    """Why the release deployed just before the live one is not the one chosen, when a rollback
    replaced it (the case a rollback by deploy order would get wrong)."""
    try:
        before = _deployed_before(releases, live_id)
    except StateError:
        return []
    rollback = timeline.replaced.get(before.id)
    if before.id == chosen.id or rollback is None:
        return []
    return [
        f"{before.version} ({before.id}), deployed just before {live_name}, is passed over: "
        f"rollback {rollback} replaced it"
    ]


def _deployed_before(releases: list[Release], live_id: str) -> Release:
    """The release deployed just before the live one (retained releases are in deploy order)."""
    live_index = next((i for i, r in enumerate(releases) if r.id == live_id), len(releases))
    older = [r for r in releases[:live_index] if r.id != live_id]
    if not older:
        raise StateError("no earlier release is retained: nothing to roll back to")
    return older[-1]


def _named(releases: list[Release], live_id: str, to: str) -> Release:
    others = [r for r in releases if r.id != live_id]
    matches = [
        r
        for r in others
        if to in (r.version, r.id) or (len(to) >= _SHORT_SHA and r.commit.startswith(to))
    ]
    if not matches:
        known = ", ".join(f"{r.version} ({r.id})" for r in others) or "none"
        raise StateError(f"no retained release matches {to!r}; retained: {known}")
    return matches[-1]


def common_rollback_version(nodes: Sequence[tuple[str, Served]]) -> RollbackChoice:
    """The release (by version) every node of an environment rolls back to when none is named:
    what served before the newest live release on any node, by the rule above. After a rollout
    that stopped half way (some nodes on the new version, the failed one back on the old),
    rolling each node back by one step would leave them on different versions; this brings them
    all to the same one. ``nodes``: each node's name and state."""
    live = [
        (node, served, release)
        for node, served in nodes
        if served.current is not None
        for release in served.releases
        if release.id == served.current.release_id
    ]
    if not live:
        raise StateError("no node has a live release: nothing to roll back")
    newest = max(live, key=lambda item: item[2].created_at)[2].version
    problem: StateError | None = None
    for node, served, release in live:  # any node serving it that retains an earlier release
        if release.version == newest:
            try:
                choice = choose_rollback(served)
            except StateError as exc:
                problem = exc
                continue
            return RollbackChoice(
                choice.release,
                f"the version every node rolls back to: on {node}, {choice.why}",
                choice.notes,
            )
    assert problem is not None  # noqa: S101
    raise problem
