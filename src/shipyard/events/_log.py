"""The deployment log: every event of one operation as JSON lines, kept locally and with the
environment's state (on its host, or in the state bucket of a cloud environment)."""

from __future__ import annotations

import os
from pathlib import Path

from shipyard.event_kinds import EventKind
from shipyard.events._event import Event
from shipyard.state import StateBackend

_BEFORE_THE_LOCK = frozenset({"validate", "lock"})


class DeploymentLog:
    """A sink writing ``<id>.jsonl`` locally as events arrive, and copying it on close to the
    environment's state, as ``logs/<id>.jsonl`` (where the newest ``keep`` logs are kept, as
    here).

    Events arrive masked (the bus masks them); lines are ``json.dumps`` output, so quotes and
    newlines in messages stay valid JSON. Nothing is written for a command that emitted no events,
    and nothing on the host for an operation refused before it held the lock (a failed check, a
    lock held by another): the host is left as it was; the log stays here.
    """

    def __init__(self, local: Path, state: StateBackend, *, keep: int = 100) -> None:
        self.local = local
        self.state = state
        self.keep = keep  # logs kept in ``local``'s directory (the newest; ids sort by time)
        self._lines: list[str] = []
        self._refused = False

    def __call__(self, event: Event) -> None:
        if event.kind == EventKind.LOCK_BLOCKED or (
            event.kind == EventKind.PHASE_FAILED and event.phase in _BEFORE_THE_LOCK
        ):
            self._refused = True
        line = event.to_json() + "\n"
        if not self._lines:
            self.local.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lines.append(line)
        fd = os.open(self.local, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as handle:
            handle.write(line)

    def close(self) -> None:
        """Copy the log to the state, then keep only the newest ``keep`` logs on both sides."""
        if not self._lines:
            return
        logs = sorted(self.local.parent.glob("*.jsonl"))
        for old in logs[: max(0, len(logs) - self.keep)]:
            old.unlink(missing_ok=True)
        if self._refused:
            return
        self.state.write(f"logs/{self.local.name}", "".join(self._lines).encode())
        kept = sorted(n for n in self.state.names("logs") if n.endswith(".jsonl"))
        for name in kept[: max(0, len(kept) - self.keep)]:
            self.state.delete(f"logs/{name}")
