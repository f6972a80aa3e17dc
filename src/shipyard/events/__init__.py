"""The event bus: every phase and outcome of an operation is an event; sinks subscribe.

The console progress display and ``--json`` output are sinks like any notifier. A sink that fails
is logged and never fails the operation. Every event is masked before any sink sees it.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, TextIO

from rich.console import Console
from rich.markup import escape

from shipyard.secrets import Masker
from shipyard.state import now_iso

__all__ = ["Bus", "ConsoleSink", "Event", "JsonLinesSink", "Sink"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """Something that happened. ``kind`` is dotted: ``phase.started``, ``deploy.failed``, …"""

    kind: str
    deployment_id: str
    app: str
    environment: str
    message: str = ""
    phase: str | None = None
    duration_s: float | None = None
    version: str | None = None
    commit: str | None = None
    error: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    timestamp: str = field(default_factory=now_iso)

    def to_json(self) -> str:
        return json.dumps(
            {k: v for k, v in asdict(self).items() if v not in (None, {}, "")}, sort_keys=True
        )


class Sink(Protocol):
    def __call__(self, event: Event) -> None: ...


class Bus:
    """Delivers masked events to every sink, in order; a failing sink never breaks the operation."""

    def __init__(self, masker: Masker) -> None:
        self._masker = masker
        self._sinks: list[Sink] = []

    def subscribe(self, sink: Sink) -> None:
        self._sinks.append(sink)

    def _mask(self, event: Event) -> Event:
        document = json.loads(self._masker(json.dumps(asdict(event))))
        return Event(**document)

    def emit(self, event: Event) -> None:
        masked = self._mask(event)
        for sink in self._sinks:
            try:
                sink(masked)
            except Exception:
                log.warning("event sink %r failed on %s", sink, masked.kind, exc_info=True)


class ConsoleSink:
    """Human progress on stderr: one line per phase with its duration."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, highlight=False)

    def __call__(self, event: Event) -> None:
        render: dict[str, Callable[[Event], str | None]] = {
            "phase.finished": lambda e: (
                f"[green]✓[/] {e.phase:<14} {e.duration_s or 0:6.1f}s  {e.message}"
            ),
            "phase.skipped": lambda e: f"[dim]- {e.phase:<14}         {e.message}[/]",
            "phase.failed": lambda e: (
                f"[red]✗[/] {e.phase:<14} {e.duration_s or 0:6.1f}s  {e.error or e.message}"
            ),
            "operation.note": lambda e: f"  [dim]{e.message}[/]",
            "operation.warning": lambda e: f"[yellow]![/] {e.message}",
        }
        safe = Event(
            **{
                **asdict(event),
                "message": escape(event.message),
                "error": escape(event.error or "") or None,
            }
        )
        renderer = render.get(event.kind)
        line = renderer(safe) if renderer is not None else None
        if line is not None:
            self.console.print(line, markup=True, soft_wrap=True)


class JsonLinesSink:
    """One JSON object per event per line (``--json``, deployment logs)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def __call__(self, event: Event) -> None:
        self.stream.write(event.to_json() + "\n")
        self.stream.flush()
