"""Running the declared phases of an operation: events, durations, cleanups and the rollback
log."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import TypeVar

from shipyard.deploy._pipeline import NO_PHASES, PhaseSpec, Pipeline, Runs
from shipyard.errors import (
    CheckFailed,
    DeployFailed,
    HostConflict,
    HostUnreachable,
    Interrupted,
    LockHeld,
    LockLost,
    RollbackFailed,
    ShipyardError,
    ToolTooOld,
)
from shipyard.events import Bus, Event, EventKind
from shipyard.state import now_iso

T = TypeVar("T")


@dataclass
class Phases:
    """Runs the phases its operation declares (``pipeline``), in their order, emitting
    ``phase.*`` events; remembers what completed.

    Cleanups registered with ``on_failure`` run (newest first) when a later phase fails, on
    SIGINT and SIGTERM alike.
    """

    bus: Bus
    deployment_id: str
    app: str
    environment: str
    node: str | None = None
    version: str | None = None
    commit: str | None = None
    started_at: str = field(default_factory=now_iso)
    completed: list[str] = field(default_factory=list)
    running: str | None = None  # the phase under way
    # Every phase that ran (completed or failed) with its duration in seconds, in order: the
    # operation's profile (``profile``).
    timings: list[tuple[str, float]] = field(default_factory=list)
    # Checked before every phase and every cleanup: raises ``LockLost`` once the operation no
    # longer holds its lock (nothing more is changed then).
    guard: Callable[[], None] = lambda: None
    pipeline: Pipeline = NO_PHASES
    _cleanups: list[tuple[str, Callable[[], None]]] = field(default_factory=list)
    _place: int = -1  # where in ``pipeline`` the last phase ran or was skipped
    _changed: bool = False  # a phase that changes the target completed

    def _enter(self, name: str) -> PhaseSpec:
        """The declaration of ``name`` where it comes next (``UndeclaredPhase`` if nowhere)."""
        place = self.pipeline.place(name, self._place)
        spec = self.pipeline.phases[place]
        if spec.runs is not Runs.AFTERWARDS:
            self._place = place
        return spec

    def event(self, kind: str, **fields: object) -> None:
        self.bus.emit(
            Event(
                kind=kind,
                deployment_id=self.deployment_id,
                app=self.app,
                environment=self.environment,
                node=self.node,
                started_at=self.started_at,
                version=self.version,
                commit=self.commit,
                **fields,  # type: ignore[arg-type]
            )
        )

    def note(self, message: str) -> None:
        self.event(EventKind.NOTE, message=message)

    def warn(self, message: str) -> None:
        self.event(EventKind.WARNING, message=message)

    def run(
        self,
        name: str,
        action: Callable[[], T],
        *,
        summary: Callable[[T], str] | None = None,
        passes: tuple[type[ShipyardError], ...] = (),
    ) -> T:
        """Run phase ``name`` (where its operation declares it). A ``ShipyardError`` it raises
        becomes ``DeployFailed`` in this phase, but for those that say nothing was changed
        (``CheckFailed``, ``LockHeld`` …) and those in ``passes``."""
        spec = self._enter(name)
        started = time.monotonic()
        self.event(EventKind.PHASE_STARTED, phase=name, message=spec.does)
        self.running = name
        try:
            if spec.locked:
                self.guard()
            result = action()
        except (
            Interrupted,
            CheckFailed,
            DeployFailed,
            RollbackFailed,
            LockHeld,
            HostUnreachable,
            ToolTooOld,
            HostConflict,
        ) as exc:
            self._failed(name, started, exc.message)
            raise
        except passes as exc:
            self._failed(name, started, exc.message)
            raise
        except ShipyardError as exc:
            self._failed(name, started, exc.message)
            raise DeployFailed(name, exc.message, hint=exc.hint) from exc
        duration = time.monotonic() - started
        self.running = None
        self.completed.append(name)
        self._changed = self._changed or spec.changes
        self.timings.append((name, round(duration, 3)))
        self.event(
            EventKind.PHASE_FINISHED,
            phase=name,
            duration_s=round(duration, 3),
            message=summary(result) if summary else "",
        )
        return result

    def _failed(self, name: str, started: float, error: str) -> None:
        duration = time.monotonic() - started
        self.timings.append((name, round(duration, 3)))
        self.event(EventKind.PHASE_FAILED, phase=name, duration_s=duration, error=error)

    def profile(self, *, total_s: float, live_s: float | None) -> None:
        """One ``operation.profile`` event listing every phase that ran and its duration, the
        whole operation's, and how long it took until the new version served (``live_s``;
        ``None``: it never did). Deployment logs end with it."""
        listed = " · ".join(f"{name} {seconds:.2f}s" for name, seconds in self.timings)
        self.event(
            EventKind.PROFILE,
            message=f"{listed} · total {total_s:.2f}s"
            + (f" (live after {live_s:.2f}s)" if live_s is not None else ""),
            duration_s=round(total_s, 3),
            data={
                "phases": [{"phase": n, "duration_s": s} for n, s in self.timings],
                "total_s": round(total_s, 3),
                "live_s": None if live_s is None else round(live_s, 3),
            },
        )

    def skip(self, name: str, reason: str) -> None:
        self._enter(name)
        self.event(EventKind.PHASE_SKIPPED, phase=name, message=reason)

    def on_failure(self, description: str, cleanup: Callable[[], None]) -> None:
        self._cleanups.append((description, cleanup))

    @property
    def changed_anything(self) -> bool:
        """Whether the target was changed: a cleanup is pending, or a changing phase completed."""
        return bool(self._cleanups) or self._changed

    @property
    def past_no_return(self) -> bool:
        """Whether the operation's point of no return completed: a failure from here switches
        back to the previous version."""
        return self.pipeline.no_return is not None and self.pipeline.no_return in self.completed

    def clear_cleanups(self) -> None:
        self._cleanups.clear()

    def run_cleanups(self) -> list[str]:
        """Run registered cleanups newest first; returns what failed. Raises only ``LockLost``
        (another operation may own the environment now: nothing is touched)."""
        failures = []
        while self._cleanups:
            self.guard()
            description, cleanup = self._cleanups.pop()
            try:
                cleanup()
            except LockLost:
                raise
            except Exception as exc:  # noqa: BLE001 — every cleanup gets its turn
                failures.append(f"{description}: {exc}")
                self.warn(f"cleanup failed: {description}: {exc}")
            else:
                self.note(f"cleanup: {description}")
        return failures


@contextmanager
def signals_raise() -> Iterator[None]:
    """Turn SIGTERM (and SIGINT) into ``Interrupted`` so cleanups run on every exit path.

    Only the main thread receives signals: in a worker thread (nodes deployed in parallel) this
    does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise Interrupted(f"interrupted by {signal.Signals(signum).name}")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@dataclass
class SignalNote:
    """The signal that arrived under ``signals_noted`` (``None``: none yet)."""

    signum: int | None = None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""


@contextmanager
def signals_noted() -> Iterator[SignalNote]:
    """SIGTERM and SIGINT are noted instead of raising, for a caller that must not be
    interrupted at an arbitrary point (e.g. while it keeps track of worker threads). In a worker
    thread nothing is installed and nothing is ever noted."""
    note = SignalNote()
    if threading.current_thread() is not threading.main_thread():
        yield note
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        note.signum = signum

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield note
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
