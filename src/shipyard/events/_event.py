"""Events: what happened, as typed records with a stable JSON shape (kinds: ``shipyard.event_kinds``)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from shipyard.secrets import Masker
from shipyard.state import now_iso


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
