"""What is deployed where, recorded on the target itself.

``<state_dir>/<app>/<environment>/`` on the host holds ``current.json`` (the live slot and release),
``releases.json`` (retained releases, newest last), ``history.jsonl`` (one line per deploy or
rollback) and the rendered files the stack runs from. The proxy's routes are derived from this
state; nothing else is a source of truth.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any, Literal

from shipyard.errors import LockHeld, ShipyardError, StateError
from shipyard.hosts import Host

__all__ = [
    "STALE_KEEP_DAYS",
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

    # -- deployment logs -------------------------------------------------------------------------
    def log_ids(self) -> list[str]:
        """Deployment ids with a log on the host, oldest first (ids start with a UTC timestamp)."""
        result = self.host.run(["ls", "-1", str(self.path("logs"))], check=False)
        return sorted(
            name.removesuffix(".jsonl") for name in result.stdout.split() if name.endswith(".jsonl")
        )

    def log(self, deployment_id: str) -> str | None:
        data = self.host.get(self.path("logs", f"{deployment_id}.jsonl"))
        return data.decode() if data is not None else None

    # -- lock --------------------------------------------------------------------------------------------
    def lock(self, deployment_id: str, operation: str, *, ttl: float = 60.0) -> Lock:
        return Lock(self, deployment_id, operation, ttl=ttl)


STALE_KEEP_DAYS = 7


class Lock:
    """One operation at a time per app and environment, on the target host.

    Taking it is one atomic ``rename`` of a private directory that already holds the owner record
    (deployment id, user@machine, pid, start, heartbeat) onto ``lock``: it fails when a lock
    exists, so a lock is never seen without its owner. The holder heartbeats every ``ttl / 4``
    seconds from a background thread; a lock whose heartbeat is older than ``ttl`` is stale. A
    takeover renames the stale lock to ``lock.stale-<its id>``, which is kept for a week (for
    `lock status` and post-mortems): a second taker that saw the same stale lock then finds that
    name taken and loses, so exactly one taker wins.
    Only the holder releases it; ``break_lock`` is the operator's ``--force``.
    """

    def __init__(
        self,
        store: StateStore,
        deployment_id: str,
        operation: str,
        *,
        ttl: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.dir = store.path("lock")
        self.ttl = ttl
        self.clock = clock
        self.owner: dict[str, Any] = {
            "deployment_id": deployment_id,
            "operation": operation,
            "by": deployer(),
            "pid": os.getpid(),
            "started_at": now_iso(),
        }
        self.held = False
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    # -- inspection ------------------------------------------------------------------------------
    def holder(self) -> dict[str, Any] | None:
        data = self.store.host.get(self.dir / "owner.json")
        if not data:
            return None
        try:
            owner: dict[str, Any] = json.loads(data)
        except json.JSONDecodeError:
            return None
        return owner

    def is_stale(self, owner: dict[str, Any] | None) -> bool:
        if owner is None:
            return False  # unreadable: only the operator can judge (`lock release --force`)
        return self.clock() - float(owner.get("heartbeat", 0)) > float(owner.get("ttl", self.ttl))

    @staticmethod
    def describe(owner: dict[str, Any] | None) -> str:
        if owner is None:
            return "an operation whose owner record is missing"
        return (
            f"{owner.get('operation', 'an operation')} by {owner.get('by', '?')} (pid {owner.get('pid', '?')}) "
            f"since {owner.get('started_at', '?')} (id {owner.get('deployment_id', '?')})"
        )

    # -- taking and giving back ----------------------------------------------------------------------
    def _write_owner(self) -> None:
        record = {**self.owner, "heartbeat": self.clock(), "ttl": self.ttl}
        self.store.host.put(self.dir / "owner.json", json.dumps(record).encode(), mode=0o600)

    def _claim(self) -> bool:
        """Rename a directory holding our owner record onto ``lock``; False if a lock exists."""
        host = self.store.host
        pending = self.store.path(f"lock.new-{self.owner['deployment_id']}")
        host.run(["rm", "-rf", str(pending)], check=False)
        record = {**self.owner, "heartbeat": self.clock(), "ttl": self.ttl}
        host.put(pending / "owner.json", json.dumps(record).encode(), mode=0o600)
        if host.run(["mv", "-T", str(pending), str(self.dir)], check=False).ok:
            return True
        host.run(["rm", "-rf", str(pending)], check=False)
        return False

    def try_acquire(self) -> bool:
        host = self.store.host
        host.run(["mkdir", "-p", "-m", "0700", str(self.store.root)])
        if not self._claim():
            owner = self.holder()
            if not self.is_stale(owner):
                return False
            stale_id = (owner or {}).get("deployment_id", "unknown")
            graveyard = self.store.path(f"lock.stale-{stale_id}")
            if not host.run(["mv", "-T", str(self.dir), str(graveyard)], check=False).ok:
                return False  # another taker won the takeover
            self.owner["took_over_from"] = stale_id
            if not self._claim():
                return False
        self.held = True
        self._prune_stale()
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name="shipyard-lock", daemon=True)
        self._beat.start()
        return True

    def _prune_stale(self) -> None:
        """Remove taken-over locks untouched for longer than ``STALE_KEEP_DAYS``."""
        self.store.host.run(
            [
                "find", str(self.store.root), "-mindepth", "1", "-maxdepth", "1", "-type", "d",
                "-name", "lock.stale-*", "-mtime", f"+{STALE_KEEP_DAYS}",
                "-exec", "rm", "-rf", "{}", "+",
            ],
            check=False,
        )  # fmt: skip

    def acquire(self, *, wait: float = 0.0, poll: float = 1.0) -> None:
        deadline = time.monotonic() + wait
        while not self.try_acquire():
            if time.monotonic() >= deadline:
                raise LockHeld(
                    f"deployment in progress: {self.describe(self.holder())}",
                    hint="wait for it (--wait), or if it died: `shipyard lock status ENV`, then "
                    "`shipyard lock release ENV --force`",
                )
            time.sleep(poll)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            owner = self.holder()
            if owner is None or owner.get("deployment_id") != self.owner["deployment_id"]:
                return  # the lock was broken (--force): never write into someone else's lock
            try:
                self._write_owner()
            except ShipyardError:
                continue

    def release(self) -> None:
        if not self.held:
            return
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=30)
        owner = self.holder()
        if owner is not None and owner.get("deployment_id") == self.owner["deployment_id"]:
            self.store.host.run(["rm", "-rf", str(self.dir)], check=False)
        self.held = False

    def break_lock(self) -> dict[str, Any] | None:
        """Remove whatever lock is there (the operator's ``--force``); returns whose it was."""
        owner = self.holder()
        self.store.host.run(["rm", "-rf", str(self.dir)], check=False)
        return owner

    def __enter__(self) -> Lock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
