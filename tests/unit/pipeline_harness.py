"""The context an operation runs in, for unit tests that call the library's operations and steps
directly (not through the CLI): its state on a fake host, its events kept in a list."""

from __future__ import annotations

from pathlib import PurePosixPath

from shipyard.config import Config
from shipyard.deploy import OperationContext
from shipyard.events import Bus, Event
from shipyard.hosts import Host, LocalHost
from shipyard.state import StateStore

STATE = PurePosixPath("/state/shop/development")  # where the tests keep an environment's state


def recording_bus(config: Config, events: list[Event] | None = None) -> tuple[Bus, list[Event]]:
    """A bus masking ``config``'s secrets and the list (``events``, or a new one) it appends
    every event to."""
    events = [] if events is None else events
    bus = Bus(config.masker)
    bus.subscribe(events.append)
    return bus, events


def operation_context(
    config: Config,
    state_host: Host,
    *,
    deployment_id: str = "d1",
    root: PurePosixPath = STATE,
    local: Host | None = None,
    bus: Bus | None = None,
    target: Host | None = None,
) -> OperationContext:
    """Operation ``deployment_id`` keeping its state on ``state_host`` under ``root``; it builds on
    ``local`` (this machine if not given) and sends its events to ``bus`` (one nobody reads if
    not given)."""
    return OperationContext(
        config=config,
        local=LocalHost() if local is None else local,
        store=StateStore.on_host(state_host, root),
        bus=Bus(config.masker) if bus is None else bus,
        deployment_id=deployment_id,
        target=target,
    )
