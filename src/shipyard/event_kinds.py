"""Every kind of event shipyard emits, and the sets notifiers filter on.

Dependency free (the standard library only): the config validates ``notifications.*.events``
against these kinds without loading the event bus, its sinks or their HTTP client.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["FAILURES", "LIFECYCLE", "EventKind"]


class EventKind(StrEnum):
    """Every kind of event shipyard emits (the ``kind`` of an ``Event``)."""

    DEPLOY_STARTED = "deploy.started"
    DEPLOY_BUILT = "deploy.built"
    DEPLOY_MIGRATED = "deploy.migrated"
    DEPLOY_SWITCHED = "deploy.switched"
    DEPLOY_LIVE = "deploy.live"  # the switch is verified: the new version serves (watch follows)
    DEPLOY_COMPLETED = "deploy.completed"
    DEPLOY_FAILED = "deploy.failed"
    DEPLOY_ROLLED_BACK = "deploy.rolled_back"
    ROLLBACK_STARTED = "rollback.started"
    ROLLBACK_COMPLETED = "rollback.completed"
    ROLLBACK_FAILED = "rollback.failed"
    LOCK_BLOCKED = "lock.blocked"
    SNAPSHOT_CREATED = "snapshot.created"
    HEALTH_DEGRADED = "health.degraded"
    # ``status`` found a domain's certificate failing: not trusted, expired, or an ACME error
    # logged since the served one was issued (a renewal that fails while it still serves).
    CERTIFICATE_FAILING = "certificate.failing"
    NOTIFY_TEST = "notify.test"
    MAINTENANCE_ON = "maintenance.on"  # the proxy answers 503 with the maintenance page
    MAINTENANCE_OFF = "maintenance.off"
    PHASE_STARTED = "phase.started"
    PHASE_FINISHED = "phase.finished"
    PHASE_SKIPPED = "phase.skipped"
    PHASE_FAILED = "phase.failed"
    NOTE = "operation.note"
    PROFILE = "operation.profile"  # the last event of an operation: each phase's duration
    WARNING = "operation.warning"


LIFECYCLE: frozenset[EventKind] = frozenset(
    {
        EventKind.DEPLOY_STARTED,
        EventKind.DEPLOY_BUILT,
        EventKind.DEPLOY_MIGRATED,
        EventKind.DEPLOY_SWITCHED,
        EventKind.DEPLOY_COMPLETED,
        EventKind.DEPLOY_FAILED,
        EventKind.DEPLOY_ROLLED_BACK,
        EventKind.ROLLBACK_STARTED,
        EventKind.ROLLBACK_COMPLETED,
        EventKind.ROLLBACK_FAILED,
        EventKind.LOCK_BLOCKED,
        EventKind.SNAPSHOT_CREATED,
        EventKind.HEALTH_DEGRADED,
        EventKind.CERTIFICATE_FAILING,
        EventKind.MAINTENANCE_ON,
        EventKind.MAINTENANCE_OFF,
    }
)
"""What notifiers receive unless their ``events`` filter says otherwise."""

FAILURES: frozenset[EventKind] = frozenset(
    {
        EventKind.DEPLOY_FAILED,
        EventKind.DEPLOY_ROLLED_BACK,
        EventKind.ROLLBACK_FAILED,
        EventKind.LOCK_BLOCKED,
        EventKind.HEALTH_DEGRADED,
        EventKind.CERTIFICATE_FAILING,
    }
)
"""Kinds that mean a person may have to act."""
