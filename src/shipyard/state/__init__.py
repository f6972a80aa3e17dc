"""What is deployed where, recorded on the target itself.

``<state_dir>/<app>/<environment>/`` on the host holds ``current.json`` (the live slot and release),
``releases.json`` (retained releases, newest last), ``history.jsonl`` (one line per deploy or
rollback) and the rendered files the stack runs from. The proxy's routes are derived from this
state; nothing else is a source of truth.
"""

from __future__ import annotations

import getpass
import json
import socket
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any, Literal

from shipyard.errors import LockHeld, StateError
from shipyard.hosts import Host

__all__ = [
    "Current",
    "HistoryEntry",
    "Lock",
    "Release",
    "Slot",
    "StateStore",
    "deployer",
    "now_iso",
    "other_slot",
]

Slot = Literal["blue", "green"]


def other_slot(slot: str | None) -> Slot:
    return "green" if slot == "blue" else "blue"


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def deployer() -> str:
    """``user@machine`` of whoever runs shipyard."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class Release:
    """A version that ran (or runs) in a slot; kept for rollback."""

    id: str
    version: str
    commit: str
    image: str
    image_id: str
    slot: str
    migration_version: int | None
    created_at: str
    deployed_by: str
    snapshot: str | None = None  # taken before this release's migrations


@dataclass(frozen=True)
class Current:
    """What serves traffic now."""

    slot: str
    release_id: str
    switched_at: str


@dataclass(frozen=True)
class HistoryEntry:
    deployment_id: str
    action: str  # deploy, rollback
    result: str  # succeeded, failed, rolled_back
    version: str
    commit: str
    slot: str
    started_at: str
    duration_s: float
    by: str
    phase: str | None = None
    error: str | None = None
    release_id: str | None = None
    steps: list[str] = field(default_factory=list)


class StateStore:
    """Reads and writes one app environment's state on its host."""

    def __init__(self, host: Host, root: PurePosixPath) -> None:
        self.host = host
        self.root = root

    # -- paths -----------------------------------------------------------------------------------
    def path(self, *parts: str) -> PurePosixPath:
        return self.root.joinpath(*parts)

    # -- json helpers ------------------------------------------------------------------------------
    def _read(self, name: str) -> Any:
        data = self.host.get(self.path(name))
        if data is None:
            return None
        try:
            return json.loads(data)
        except json.JSONDecodeError as exc:
            raise StateError(
                f"{self.host.name}:{self.path(name)} is not valid JSON",
                hint="restore it from history or remove it to start over",
            ) from exc

    def _write(self, name: str, value: Any) -> None:
        self.host.put(self.path(name), (json.dumps(value, indent=2) + "\n").encode(), mode=0o600)

    # -- current -------------------------------------------------------------------------------------
    def current(self) -> Current | None:
        data = self._read("current.json")
        return Current(**data) if data else None

    def set_current(self, current: Current) -> None:
        self._write("current.json", asdict(current))

    # -- releases --------------------------------------------------------------------------------------
    def releases(self) -> list[Release]:
        return [Release(**item) for item in self._read("releases.json") or []]

    def release(self, release_id: str) -> Release | None:
        return next((r for r in self.releases() if r.id == release_id), None)

    def save_releases(self, releases: list[Release]) -> None:
        self._write("releases.json", [asdict(r) for r in releases])

    # -- history -----------------------------------------------------------------------------------------
    def history(self) -> list[HistoryEntry]:
        data = self.host.get(self.path("history.jsonl"))
        entries = []
        for line in (data or b"").decode().splitlines():
            if line.strip():
                entries.append(HistoryEntry(**json.loads(line)))
        return entries

    def append_history(self, entry: HistoryEntry) -> None:
        existing = self.host.get(self.path("history.jsonl")) or b""
        line = json.dumps(asdict(entry), separators=(",", ":")) + "\n"
        self.host.put(self.path("history.jsonl"), existing + line.encode(), mode=0o600)

    # -- lock --------------------------------------------------------------------------------------------
    def lock(self, deployment_id: str, operation: str) -> Lock:
        return Lock(self, deployment_id, operation)


class Lock:
    """One operation at a time per app and environment: an atomic ``mkdir`` on the host."""

    def __init__(self, store: StateStore, deployment_id: str, operation: str) -> None:
        self.store = store
        self.dir = store.path("lock")
        self.owner = {
            "deployment_id": deployment_id,
            "operation": operation,
            "by": deployer(),
            "started_at": now_iso(),
        }
        self.held = False

    def acquire(self) -> None:
        host = self.store.host
        host.run(["mkdir", "-p", "-m", "0700", str(self.store.root)])
        result = host.run(["mkdir", "-m", "0700", str(self.dir)], check=False)
        if not result.ok:
            owner = self.holder() or {}
            raise LockHeld(
                f"{owner.get('operation', 'an operation')} in progress by {owner.get('by', '?')} "
                f"since {owner.get('started_at', '?')} (id {owner.get('deployment_id', '?')})",
                hint="wait for it to finish; if it died, `shipyard lock release ENV --force`",
            )
        host.put(self.dir / "owner.json", json.dumps(self.owner).encode(), mode=0o600)
        self.held = True

    def holder(self) -> dict[str, Any] | None:
        data = self.store.host.get(self.dir / "owner.json")
        return json.loads(data) if data else None

    def release(self) -> None:
        if self.held:
            self.store.host.run(["rm", "-rf", str(self.dir)], check=False)
            self.held = False

    def __enter__(self) -> Lock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
