"""Maintenance mode: the proxy answers every request with 503 and a page (but the app's health
paths and allowed networks), recorded in the environment's state so every later render of the
proxy's config keeps it.

`shipyard maintenance on|off` changes it under the environment's lock (``deploy.run_maintenance``).
``deploy --maintenance`` turns it on just before the migrate phase and off once the switch to
the new version is verified (before the watch, which reads the app's own error rate): no user
request reaches either version while migrations that cannot run online run. A deploy that fails
turns off what it turned on (a clean-up); one that is killed leaves the record naming it, and the
repair that comes first in the next operation (or `shipyard repair`) turns it off. Maintenance an
operator turned on stays on through deploys until they turn it off.
"""

from __future__ import annotations

from typing import Protocol

from shipyard.state import Maintenance, StateStore, deployer, now_iso

__all__ = [
    "MaintenanceMode",
    "by_operator",
    "end_left_maintenance",
    "end_maintenance",
    "for_deploy",
]


class MaintenanceMode(Protocol):
    """The proxy's maintenance mode."""

    def set_maintenance(self, maintenance: Maintenance | None) -> str:
        """Record maintenance mode on (``maintenance``) or off (``None``) in the state, then give
        the running proxy the config rendered from it (atomically; no request in flight fails)."""
        ...


DEPLOY_MESSAGE = "A new version is being deployed. Please try again in a minute."
DEPLOY_RETRY_AFTER = 60


def for_deploy(deployment_id: str) -> Maintenance:
    """The maintenance mode ``deploy --maintenance`` turns on (and off again)."""
    return Maintenance(
        message=DEPLOY_MESSAGE,
        allow=(),
        retry_after=DEPLOY_RETRY_AFTER,
        since=now_iso(),
        by=f"deploy {deployment_id}",
        deployment=deployment_id,
    )


def end_maintenance(store: StateStore, steps: MaintenanceMode, deployment_id: str) -> str:
    """Turn off the maintenance mode ``deployment_id`` turned on (nothing when it is off or
    someone else's)."""
    on = store.maintenance()
    if on is None or on.deployment != deployment_id:
        return "maintenance mode was not on by this deploy"
    return steps.set_maintenance(None)


def end_left_maintenance(
    store: StateStore, steps: MaintenanceMode, *, deployment_id: str
) -> str | None:
    """Under the lock (a repair): turn off the maintenance mode a deploy that no longer runs
    turned on and could not turn off (it was killed). What it says, or ``None``."""
    on = store.maintenance()
    if on is None or on.deployment is None or on.deployment == deployment_id:
        return None
    steps.set_maintenance(None)
    return (
        f"turned maintenance mode off: deploy {on.deployment} turned it on at {on.since} and was "
        "interrupted"
    )


def by_operator(message: str, allow: tuple[str, ...], retry_after: int) -> Maintenance:
    """The maintenance mode an operator turns on (`shipyard maintenance on`)."""
    return Maintenance(
        message=message, allow=allow, retry_after=retry_after, since=now_iso(), by=deployer()
    )
