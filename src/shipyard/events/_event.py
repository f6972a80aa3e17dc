"""Events: what happened, as typed records with a stable JSON shape."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from shipyard.secrets import Masker
from shipyard.state import now_iso


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
    NOTIFY_TEST = "notify.test"
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
    }
)
"""Kinds that mean a person may have to act."""


@dataclass(frozen=True)
class Event:
    """Something that happened. ``kind`` is an ``EventKind`` value: ``deploy.failed``, …"""

    kind: str
    deployment_id: str
    app: str
    environment: str
    message: str = ""
    node: str | None = None  # the host the environment runs on
    started_at: str | None = None  # when the operation started
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


def mask_event(masker: Masker, event: Event) -> Event:
    """The event with every secret replaced by ``***`` in every field."""
    document = json.loads(masker(json.dumps(asdict(event))))
    return Event(**document)
