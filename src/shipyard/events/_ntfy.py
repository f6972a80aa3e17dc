"""ntfy push notifications: title, priority and tags chosen per event kind.

Published as JSON to the server's root URL (``{"topic", "title", "message", "priority", "tags"}``)
with an optional ``Authorization: Bearer <token>``. Failures are high priority with a warning
tag; success is default priority.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Unpack

import httpx

from shipyard import __version__
from shipyard.event_kinds import EventKind
from shipyard.events._delivery import DeliveryResult, HttpNotifier, NotifierOptions, RetryPolicy
from shipyard.events._event import Event
from shipyard.secrets import Masker

_MIN, _LOW, _DEFAULT, _HIGH = 1, 2, 3, 4

# kind → (what happened, priority, tags); tags that name an emoji show as one on phones.
_STYLE: dict[str, tuple[str, int, list[str]]] = {
    EventKind.DEPLOY_STARTED: ("deploy started", _LOW, ["rocket"]),
    EventKind.DEPLOY_BUILT: ("image built", _MIN, ["package"]),
    EventKind.DEPLOY_MIGRATED: ("database migrated", _LOW, ["card_file_box"]),
    EventKind.DEPLOY_SWITCHED: ("traffic switched", _LOW, ["twisted_rightwards_arrows"]),
    EventKind.DEPLOY_COMPLETED: ("deployed", _DEFAULT, ["white_check_mark"]),
    EventKind.DEPLOY_FAILED: ("deploy FAILED", _HIGH, ["warning"]),
    EventKind.DEPLOY_ROLLED_BACK: ("rolled back", _HIGH, ["warning", "rewind"]),
    EventKind.ROLLBACK_STARTED: ("rollback started", _LOW, ["rewind"]),
    EventKind.ROLLBACK_COMPLETED: ("rolled back", _DEFAULT, ["white_check_mark", "rewind"]),
    EventKind.ROLLBACK_FAILED: ("rollback FAILED", _HIGH, ["warning"]),
    EventKind.LOCK_BLOCKED: ("deploy blocked by a lock", _HIGH, ["warning", "lock"]),
    EventKind.SNAPSHOT_CREATED: ("database snapshot created", _LOW, ["floppy_disk"]),
    EventKind.HEALTH_DEGRADED: ("health degraded", _HIGH, ["warning"]),
    EventKind.CERTIFICATE_FAILING: ("certificate failing", _HIGH, ["warning", "lock"]),
    EventKind.NOTIFY_TEST: ("test notification", _DEFAULT, ["test_tube"]),
}


def ntfy_message(topic: str, event: Event) -> dict[str, Any]:
    """The JSON document ntfy publishes for a (masked) event."""
    what, priority, tags = _STYLE.get(event.kind, (str(event.kind), _DEFAULT, []))
    version = f" {event.version}" if event.version else ""
    lines = [event.error or event.message or what]
    facts = [
        ("version", event.version),
        ("commit", event.commit[:12] if event.commit else None),
        ("phase", event.phase),
        ("node", event.node),
        ("duration", f"{event.duration_s:.1f}s" if event.duration_s is not None else None),
        ("deployment", event.deployment_id),
    ]
    lines += [f"{label}: {value}" for label, value in facts if value]
    return {
        "topic": topic,
        "title": f"{event.app} {event.environment}: {what}{version}",
        "message": "\n".join(lines),
        "priority": priority,
        "tags": tags,
    }


class NtfyNotifier(HttpNotifier):
    """Publishes events to one ntfy topic, retried within ``policy``."""

    def __init__(
        self,
        name: str,
        server: str,
        topic: str,
        token: str | None,
        kinds: Collection[str],
        policy: RetryPolicy,
        masker: Masker,
        **shared: Unpack[NotifierOptions],
    ) -> None:
        super().__init__(name, kinds, policy, masker, **shared)
        self.server = server.rstrip("/")
        self.topic = topic
        self._token = token

    def send(self, event: Event) -> DeliveryResult:
        document = ntfy_message(self.topic, event)
        headers = {"user-agent": f"shipyard/{__version__}"}
        if self._token:
            headers["authorization"] = f"Bearer {self._token}"

        def attempt(timeout: float) -> httpx.Response:
            return self._client.post(
                self.server + "/", json=document, headers=headers, timeout=timeout
            )

        return self._post(event, attempt)
