"""Records of an environment's state with plain defaults, for tests that care about a few of
their fields only."""

from __future__ import annotations

from typing import Any

from shipyard.state import HistoryEntry

# What a history entry is unless a test says otherwise.
_HISTORY_DEFAULTS: dict[str, Any] = {
    "action": "deploy",
    "slot": "blue",
    "duration_s": 1.0,
    "by": "me",
}


def succeeded(deployment_id: str, version: str, **fields: Any) -> HistoryEntry:
    """The history entry of operation ``deployment_id`` that brought ``version`` and succeeded;
    ``fields`` gives ``commit`` and ``started_at`` and may set any other field of the entry."""
    return HistoryEntry(
        deployment_id=deployment_id,
        result="succeeded",
        version=version,
        **(_HISTORY_DEFAULTS | fields),
    )
