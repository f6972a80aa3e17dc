"""What is deployed where, recorded where the environment runs.

An environment's state is a set of named records kept by a backend (``state._backend``): on a
Docker host, the directory ``<state_dir>/<app>/<environment>/`` (``HostState``); for an
environment without a host of its own, a prefix in an S3 bucket (``state._s3``). It holds
``current.json`` (the live slot and release),
``releases.json`` (retained releases, newest last), ``history.jsonl`` (one line per deploy or
rollback), ``journal.json`` (while an operation changes what serves: what it is doing, so that the
next operation can finish or undo it if this one is killed), ``maintenance.json`` (while the
proxy answers every request with its maintenance page) and the rendered files the stack runs
from. The proxy's routes are derived from this state; nothing else is a source of truth.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from shipyard.errors import LockHeld, LockLost, ShipyardError, StateError
from shipyard.state._backend import HostState, StateBackend
from shipyard.waiting import wait_until

if TYPE_CHECKING:
    from shipyard.hosts import Host

__all__ = [
    "STALE_KEEP_DAYS",
    "STEPS",
    "Current",
    "Fence",
    "HistoryEntry",
    "HostState",
    "Intent",
    "Lock",
    "Maintenance",
    "Release",
    "Slot",
    "StateBackend",
    "StateStore",
    "deployer",
    "holder_is_gone",
    "now_iso",
    "other_slot",
    "retained",
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


def retained(ids: Sequence[str], keep: int, *, live: str, previous: str | None) -> set[str]:
    """Which of the releases ``ids`` (in deploy order) stay once ``live`` serves: the newest
    ``keep``, but never without ``live`` nor, while ``keep`` leaves room for both, ``previous``,
    the one that served until ``live`` came in (what a rollback brings back, however old: a
    rollback keeps an old release's place). Older ones go first instead."""
    protected = list(dict.fromkeys(i for i in (live, previous) if i is not None and i in ids))
    stay = set(protected[: max(keep, 1)])
    others = [i for i in ids if i not in stay]
    room = max(keep - len(stay), 0)
    return stay | set(others[max(len(others) - room, 0) :] if room else [])


@dataclass(frozen=True)
class Current:
    """What serves traffic now."""

    slot: str
    release_id: str
    switched_at: str


@dataclass(frozen=True)
class Maintenance:
    """Maintenance mode, recorded while it is on: the proxy answers every request with 503 and
    ``message`` (``Retry-After: retry_after``) but those from ``allow`` (CIDRs) and those for the
    app's health paths. ``deployment``: the deploy that turned it on (``deploy --maintenance``),
    which turns it off again, as does the repair of that deploy if it was killed; ``None`` when
    an operator turned it on (only `shipyard maintenance off` ends it)."""

    message: str
    allow: tuple[str, ...]
    retry_after: int
    since: str
    by: str
    deployment: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"on": True, **asdict(self), "allow": list(self.allow)}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Maintenance:
        return Maintenance(
            message=str(data["message"]),
            allow=tuple(str(cidr) for cidr in data.get("allow") or ()),
            retry_after=int(data["retry_after"]),
            since=str(data["since"]),
            by=str(data["by"]),
            deployment=data.get("deployment"),
        )


# What an operation has reached, in order: ``begin`` once it holds the lock, ``migrate`` before
# it migrates, then the steps of bringing a version live. Before ``start`` nothing serves
# differently; until ``watched`` the new version is not proven: an interrupted operation is undone
# (the previous version serves again); from ``watched`` on it is finished (the new version stays).
STEPS = (
    "begin",
    "migrate",
    "start",
    "health",
    "switch",
    "switched",
    "verified",
    "watched",
    "retired",
)


@dataclass(frozen=True)
class Intent:
    """What an operation is changing, written on the host before it changes what serves and
    cleared once it is recorded (or undone). Found by the next operation, it says that one was
    interrupted and what to finish or undo."""

    deployment_id: str
    action: str  # deploy, rollback, rotate-password
    release: Release | None  # what it brings live (once known); its ``slot`` is the candidate
    previous: Current | None  # what served before it
    step: str  # the last of ``STEPS`` reached
    by: str
    started_at: str
    updated_at: str
    fresh_image: bool = False  # the operation built its image (so undoing it removes the image)

    def at(self, step: str, release: Release | None = None) -> Intent:
        return replace(self, step=step, release=release or self.release, updated_at=now_iso())

    @property
    def started(self) -> bool:
        """Whether it had begun to bring its version live (a candidate may exist)."""
        return self.release is not None and STEPS.index(self.step) >= STEPS.index("start")

    @property
    def proven(self) -> bool:
        """Whether the next operation finishes this one rather than undoing it: the new version
        passed the watch window, or nothing served before it and the switch to it had begun."""
        reached = STEPS.index(self.step)
        if self.previous is None:
            return reached >= STEPS.index("switch")
        return reached >= STEPS.index("watched")

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Intent:
        previous, release = data.get("previous"), data.get("release")
        if data.get("step") not in STEPS:
            raise ValueError(f"unknown step {data.get('step')!r}")
        return Intent(
            **{
                **data,
                "release": Release(**release) if release else None,
                "previous": Current(**previous) if previous else None,
            }
        )


@dataclass(frozen=True)
class HistoryEntry:
    deployment_id: str
    action: str  # deploy, rollback, rotate-password, repair, restore
    result: str  # succeeded, failed, rolled_back, interrupted
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
    """Reads and writes one app environment's state, wherever its backend keeps it."""

    def __init__(self, backend: StateBackend) -> None:
        self.backend = backend
        self.root = backend.root

    @classmethod
    def on_host(cls, host: Host, root: PurePosixPath) -> StateStore:
        """State in the directory ``root`` on ``host``."""
        return cls(HostState(host, root))

    # -- paths -----------------------------------------------------------------------------------
    def path(self, *parts: str) -> PurePosixPath:
        return self.root.joinpath(*parts)

    # -- json helpers ------------------------------------------------------------------------------
    def _read(self, name: str) -> Any:
        data = self.backend.read(name)
        if data is None:
            return None
        try:
            return json.loads(data)
        except json.JSONDecodeError as exc:
            raise StateError(
                f"{self.backend.where(name)} is not valid JSON",
                hint="restore it from history or remove it to start over",
            ) from exc

    def _write(self, name: str, value: Any) -> None:
        self.backend.write(name, (json.dumps(value, indent=2) + "\n").encode())

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

    # -- journal -----------------------------------------------------------------------------------------
    def intent(self) -> Intent | None:
        """The operation that was changing what serves and has not finished (or been undone)."""
        data = self._read("journal.json")
        if not data:
            return None
        try:
            return Intent.from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(
                f"{self.backend.where('journal.json')} is not a journal shipyard wrote",
                hint="check `shipyard status`; remove the file to forget the interrupted operation",
            ) from exc

    def write_intent(self, intent: Intent) -> None:
        self._write("journal.json", asdict(intent))

    def clear_intent(self) -> None:
        self.backend.delete("journal.json")

    # -- maintenance -------------------------------------------------------------------------------
    def maintenance(self) -> Maintenance | None:
        """Maintenance mode as recorded (``None``: off). The proxy's config is rendered from it."""
        data = self._read("maintenance.json")
        if not data or not data.get("on"):
            return None
        try:
            return Maintenance.from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(
                f"{self.backend.where('maintenance.json')} is not a maintenance record "
                "shipyard wrote",
                hint="`shipyard maintenance on|off ENV` writes it again",
            ) from exc

    def set_maintenance(self, maintenance: Maintenance | None) -> None:
        """Record maintenance mode on (``maintenance``) or off (``None``)."""
        if maintenance is None:
            self.backend.delete("maintenance.json")
        else:
            self._write("maintenance.json", maintenance.to_dict())

    # -- switches ----------------------------------------------------------------------------------------
    def switch_marks(self) -> list[dict[str, Any]]:
        """What the proxy had counted at each recent switch, oldest first: ``release_id``,
        ``version``, ``at``, ``proxy_started`` and ``latency`` (a ``shipyard.proxy.Latency``):
        what one version's latency is told from the one before it by."""
        data = self._read("switches.json")
        return [m for m in data if isinstance(m, dict)] if isinstance(data, list) else []

    def add_switch_mark(self, mark: dict[str, Any], *, keep: int = 5) -> None:
        self._write("switches.json", [*self.switch_marks(), mark][-keep:])

    # -- history -----------------------------------------------------------------------------------------
    def history(self) -> list[HistoryEntry]:
        data = self.backend.read("history.jsonl")
        entries = []
        for line in (data or b"").decode().splitlines():
            if line.strip():
                entries.append(HistoryEntry(**json.loads(line)))
        return entries

    def trim_history(self, days: int) -> int:
        """Drop history lines of operations started more than ``days`` ago; returns how many."""
        data = self.backend.read("history.jsonl")
        if not data:
            return 0
        cutoff = (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S")
        lines = data.decode().splitlines(keepends=True)
        kept = [
            line
            for line in lines
            if not line.strip() or json.loads(line).get("started_at", "") >= cutoff
        ]
        if len(kept) != len(lines):
            self.backend.write("history.jsonl", "".join(kept).encode())
        return len(lines) - len(kept)

    def append_history(self, entry: HistoryEntry) -> None:
        existing = self.backend.read("history.jsonl") or b""
        line = json.dumps(asdict(entry), separators=(",", ":")) + "\n"
        self.backend.write("history.jsonl", existing + line.encode())

    # -- deployment logs -------------------------------------------------------------------------
    def log_ids(self) -> list[str]:
        """Deployment ids with a kept log, oldest first (ids start with a UTC timestamp)."""
        return sorted(
            name.removesuffix(".jsonl")
            for name in self.backend.names("logs")
            if name.endswith(".jsonl")
        )

    def log(self, deployment_id: str) -> str | None:
        data = self.backend.read(f"logs/{deployment_id}.jsonl")
        return data.decode() if data is not None else None

    # -- lock --------------------------------------------------------------------------------------------
    def lock(self, deployment_id: str, operation: str, *, ttl: float = 60.0) -> Lock:
        return Lock(self, deployment_id, operation, ttl=ttl)


STALE_KEEP_DAYS = 7


class Lock:
    """One operation at a time per app and environment, kept by the state's backend.

    Taking it creates the lock's owner record (deployment id, user@machine, pid, start,
    heartbeat) atomically, only if no lock exists (``StateBackend.lock_create``: on a host, the
    rename of a private directory that already holds the record onto ``lock``; in a bucket, a
    conditional write), so a lock is never seen without its owner. The holder heartbeats every
    ``ttl / 4`` seconds from a background thread; a lock whose heartbeat is older than ``ttl``
    is stale, and so is one whose holder ran on this machine and is no longer running (a killed
    deploy's lock is taken over at once, not after the TTL). A takeover replaces the stale
    record only if it is still the one read, keeping it as ``lock.stale-<its id>`` for a week
    (for `lock status` and post-mortems): of two takers that saw the same stale lock, exactly
    one wins.

    The holder is fenced: ``ensure_held`` (called before every change an operation makes) fails
    with ``LockLost`` once the lock names another operation, or once the holder itself went
    without a heartbeat for longer than ``ttl`` (paused, suspended): from then on another
    operation may be taking it over, so the holder changes nothing more and never heartbeats
    again. Only the holder releases it; ``break_lock`` is the operator's ``--force``.
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
        self.backend = store.backend
        self.ttl = ttl
        self.clock = clock
        self.owner: dict[str, Any] = {
            "deployment_id": deployment_id,
            "operation": operation,
            "by": deployer(),
            "pid": os.getpid(),
            "pid_start": _process_start(os.getpid()),
            "pid_space": _pid_space(),
            "started_at": now_iso(),
        }
        self.held = False
        self.took_over: dict[str, Any] | None = None  # the owner record of a stale lock taken over
        self.lost: str | None = None  # why the lock is no longer ours, once it is not
        self._token: str | None = None  # our record's, as the backend last wrote it
        self._beat_at = (0.0, 0.0)  # (monotonic, clock) of the last heartbeat written
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    # -- inspection ------------------------------------------------------------------------------
    def _read(self) -> tuple[dict[str, Any] | None, str | None]:
        """The owner record (``None`` when missing or unreadable) and its token (``None``:
        no lock at all)."""
        found = self.backend.lock_read()
        if found is None:
            return None, None
        data, token = found
        try:
            owner = json.loads(data)
        except json.JSONDecodeError:
            return None, token
        return (owner if isinstance(owner, dict) else None), token

    def holder(self) -> dict[str, Any] | None:
        return self._read()[0]

    def exists(self) -> bool:
        """Whether an owner record is there at all (readable or not)."""
        return self.backend.lock_read() is not None

    def is_stale(self, owner: dict[str, Any] | None) -> bool:
        if owner is None:
            return False  # unreadable: only the operator can judge (`lock release --force`)
        if holder_is_gone(owner):
            return True
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
    def _record(self) -> bytes:
        return json.dumps({**self.owner, "heartbeat": self.clock(), "ttl": self.ttl}).encode()

    def _beaten(self, token: str) -> None:
        self._token = token
        self._beat_at = (time.monotonic(), self.clock())

    def _silence(self) -> float:
        """Seconds since this holder last heartbeat, by either clock: the monotonic one keeps
        counting while the process is stopped, the wall clock also while the machine sleeps."""
        monotonic, wall = self._beat_at
        return max(time.monotonic() - monotonic, self.clock() - wall)

    def try_acquire(self) -> bool:
        me = self.owner["deployment_id"]
        token = self.backend.lock_create(me, self._record())
        if token is None:
            owner, stale_token = self._read()
            if stale_token is None:
                return False  # released meanwhile: the next try takes it
            if not self.is_stale(owner):
                return False
            stale_id = (owner or {}).get("deployment_id", "unknown")
            self.owner["took_over_from"] = stale_id
            token = self.backend.lock_take_over(stale_token, stale_id, me, self._record())
            if token is None:
                self.owner.pop("took_over_from")
                return False  # another taker won the takeover
            self.took_over = owner
        self._beaten(token)
        self.held = True
        self.lost = None
        self.backend.lock_prune(STALE_KEEP_DAYS)
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name="shipyard-lock", daemon=True)
        self._beat.start()
        return True

    def acquire(self, *, wait: float = 0.0, poll: float = 1.0) -> None:
        if not wait_until(self.try_acquire, timeout=wait, interval=poll):
            raise LockHeld(
                f"deployment in progress: {self.describe(self.holder())}",
                hint="wait for it (--wait), or if it died: `shipyard lock status ENV`, then "
                "`shipyard lock release ENV --force`",
            )

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            if self._silence() > self.ttl:
                # Unresponsive past the TTL: another operation may be taking the lock over right
                # now, so it is never written again.
                self._lose(
                    f"no heartbeat for {self._silence():.0f}s (deploy.lock_ttl {self.ttl:g}s)"
                )
                return
            try:  # a failure to reach the lock is tried again at the next beat
                owner = self.holder()
                if owner is None or owner.get("deployment_id") != self.owner["deployment_id"]:
                    self._lose(f"the lock now belongs to {self.describe(owner)}")
                    return  # the lock was broken (--force): never write into someone else's lock
                token = self.backend.lock_refresh(self._token or "", self._record())
            except ShipyardError:
                continue
            if token is None:
                self._lose(f"the lock now belongs to {self.describe(self.holder())}")
                return
            self._beaten(token)

    def _lose(self, why: str) -> None:
        if self.lost is None:
            self.lost = why

    def ensure_held(self) -> None:
        """Fail with ``LockLost`` unless this operation still holds the lock (see the class)."""
        if not self.held:
            raise LockLost("this operation does not hold the environment's lock")
        silence = self._silence()
        if self.lost is None and silence > self.ttl:
            self._lose(f"no heartbeat for {silence:.0f}s (deploy.lock_ttl {self.ttl:g}s)")
        if self.lost is None:
            owner = self.holder()
            if owner is None or owner.get("deployment_id") != self.owner["deployment_id"]:
                self._lose(f"the lock now belongs to {self.describe(owner)}")
        if self.lost is not None:
            raise LockLost(
                f"lost the lock of {self.store.root.name}: {self.lost}; this operation was "
                "unresponsive (paused or suspended) for longer than the lock's TTL, so another "
                "operation may have taken over — it changed nothing more",
                hint="`shipyard status ENV` shows what serves; the next deploy (or `shipyard "
                "repair ENV`) finishes or undoes what this one left",
            )

    def release(self) -> None:
        if not self.held:
            return
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=30)
        owner = self.holder()
        if owner is not None and owner.get("deployment_id") == self.owner["deployment_id"]:
            self.backend.lock_delete(self._token)
        self.held = False

    def break_lock(self) -> dict[str, Any] | None:
        """Remove whatever lock is there (the operator's ``--force``); returns whose it was."""
        owner = self.holder()
        self.backend.lock_delete(None)
        return owner

    def __enter__(self) -> Lock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot; Linux), ``None`` when it is not
    running, a zombie, or this is not Linux."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) "
    if not fields or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _pid_space() -> str | None:
    """This boot of this machine and the process-id namespace shipyard runs in (Linux): where a
    pid names the same process. ``None`` elsewhere."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return f"{boot}/{namespace}"


def holder_is_gone(owner: dict[str, Any]) -> bool:
    """Whether a lock's holder ran where this process runs (the same boot and pid namespace, by
    the same user@machine) and is no longer running (its pid is free, a zombie, or reused by a
    later process)."""
    pid, started = owner.get("pid"), owner.get("pid_start")
    space = _pid_space()
    if (
        owner.get("by") != deployer()
        or space is None
        or owner.get("pid_space") != space
        or not isinstance(pid, int)
        or not isinstance(started, int)
    ):
        return False
    if pid == os.getpid():
        return False
    return _process_start(pid) != started


class Fence:
    """The lock an operation holds, checked before each change it makes (``check``). Created
    with the operation's context, armed once the lock is taken; unarmed it checks nothing
    (commands that take no lock)."""

    def __init__(self) -> None:
        self._lock: Lock | None = None

    def arm(self, lock: Lock) -> None:
        self._lock = lock

    def disarm(self) -> None:
        self._lock = None

    def check(self) -> None:
        if self._lock is not None:
            self._lock.ensure_held()
