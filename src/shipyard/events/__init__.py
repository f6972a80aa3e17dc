"""The event bus: every phase and outcome of an operation is an event; sinks subscribe.

The console progress display and ``--json`` output are sinks like any notifier. A sink that fails
is logged and never fails the operation. Every event is masked before any sink sees it.

Network sinks (signed webhooks, ntfy) run on background threads behind a ``Dispatcher``: the
operation never waits for them, and ``Bus.close`` waits for what is left only up to a deadline.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import Protocol, TextIO, runtime_checkable

from rich.console import Console
from rich.markup import escape

from shipyard.event_kinds import FAILURES, LIFECYCLE, EventKind
from shipyard.events._delivery import (
    DeliveryResult,
    Dispatcher,
    Notifier,
    RetryPolicy,
    deliver,
)
from shipyard.events._event import Event, mask_event
from shipyard.events._log import DeploymentLog
from shipyard.events._notify import dispatcher_for, notifiers_from_config, send_test
from shipyard.events._ntfy import NtfyNotifier
from shipyard.events._webhook import WebhookNotifier, sign, webhook_body
from shipyard.secrets import Masker
from shipyard.secrets import decode_webhook_secret as decode_secret

__all__ = [
    "FAILURES",
    "LIFECYCLE",
    "Bus",
    "Closable",
    "ConsoleSink",
    "DeliveryResult",
    "DeploymentLog",
    "Dispatcher",
    "Event",
    "EventKind",
    "JsonLinesSink",
    "Notifier",
    "NtfyNotifier",
    "RetryPolicy",
    "Sink",
    "WebhookNotifier",
    "decode_secret",
    "deliver",
    "dispatcher_for",
    "mask_event",
    "notifiers_from_config",
    "send_test",
    "sign",
    "webhook_body",
]

log = logging.getLogger(__name__)


class Sink(Protocol):
    def __call__(self, event: Event) -> None: ...


@runtime_checkable
class Closable(Protocol):
    """A sink with deliveries in flight: ``close`` waits for them up to its own deadline."""

    def close(self) -> None: ...


class Bus:
    """Delivers masked events to every sink, in order; a failing sink never breaks the operation."""

    def __init__(self, masker: Masker) -> None:
        self._masker = masker
        self._sinks: list[Sink] = []
        self._closed = False

    def subscribe(self, sink: Sink) -> None:
        self._sinks.append(sink)

    def emit(self, event: Event) -> None:
        masked = mask_event(self._masker, event)
        for sink in self._sinks:
            try:
                sink(masked)
            except Exception:
                log.warning("event sink %r failed on %s", sink, masked.kind, exc_info=True)

    def close(self) -> None:
        """Let sinks finish what is in flight (each within its deadline). Idempotent."""
        if self._closed:
            return
        self._closed = True
        for sink in self._sinks:
            if isinstance(sink, Closable):
                try:
                    sink.close()
                except Exception:
                    log.warning("event sink %r failed to close", sink, exc_info=True)


class ConsoleSink:
    """Human progress on stderr: one line per phase with its duration."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, highlight=False)

    def __call__(self, event: Event) -> None:
        render: dict[str, Callable[[Event], str | None]] = {
            **dict.fromkeys(
                (EventKind.DEPLOY_STARTED, EventKind.ROLLBACK_STARTED), _announced_phases
            ),
            EventKind.PHASE_FINISHED: lambda e: (
                f"[green]✓[/] {e.phase:<14} {e.duration_s or 0:6.1f}s  {e.message}"
            ),
            EventKind.PHASE_SKIPPED: lambda e: f"[dim]- {e.phase:<14}         {e.message}[/]",
            EventKind.PHASE_FAILED: lambda e: (
                f"[red]✗[/] {e.phase:<14} {e.duration_s or 0:6.1f}s  {e.error or e.message}"
            ),
            EventKind.DEPLOY_LIVE: lambda e: f"[bold green]● live[/]           {e.message}",
            EventKind.NOTE: lambda e: f"  [dim]{e.message}[/]",
            EventKind.WARNING: lambda e: f"[yellow]![/] {e.message}",
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


def _announced_phases(event: Event) -> str | None:
    """The line an operation starts with: what it is and its phases, in order (as its
    pipeline declares them; in brackets those that run only under a condition)."""
    phases = (event.data or {}).get("phases")
    if not phases:
        return None
    return f"[dim]{event.message}: {escape(' → '.join(phases))}[/]"


class JsonLinesSink:
    """One JSON object per event per line (``--json``, deployment logs)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def __call__(self, event: Event) -> None:
        self.stream.write(event.to_json() + "\n")
        self.stream.flush()
