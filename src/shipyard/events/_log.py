"""The deployment log: every event of one operation as JSON lines, kept locally and on the host."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from shipyard.event_kinds import EventKind
from shipyard.events._event import Event
from shipyard.hosts import Host

_BEFORE_THE_LOCK = frozenset({"validate", "lock"})


class DeploymentLog:
    """A sink writing ``<id>.jsonl`` locally as events arrive, and copying it to the host on close
    (where the newest ``keep`` logs are kept, as here).

    Events arrive masked (the bus masks them); lines are ``json.dumps`` output, so quotes and
    newlines in messages stay valid JSON. Nothing is written for a command that emitted no events,
    and nothing on the host for an operation refused before it held the lock (a failed check, a
    lock held by another): the host is left as it was; the log stays here.
    """

    def __init__(self, local: Path, host: Host, remote: PurePosixPath, *, keep: int = 100) -> None:
        self.local = local
        self.host = host
        self.remote = remote
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
        """Copy the log to the host, then keep only the newest ``keep`` logs on both sides."""
        if not self._lines:
            return
        logs = sorted(self.local.parent.glob("*.jsonl"))
        for old in logs[: max(0, len(logs) - self.keep)]:
            old.unlink(missing_ok=True)
        if self._refused:
            return
        self.host.put(self.remote, "".join(self._lines).encode(), mode=0o600)
        directory = self.remote.parent
        listed = self.host.run(["ls", "-1", str(directory)], check=False)
        remote = sorted(n for n in listed.stdout.split() if n.endswith(".jsonl"))
        stale = [str(directory / n) for n in remote[: max(0, len(remote) - self.keep)]]
        if stale:
            self.host.run(["rm", "-f", *stale], check=False)
