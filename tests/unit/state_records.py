"""Records of an environment's state with plain defaults, for tests that care about a few of
their fields only."""

from __future__ import annotations

from shipyard.state import HistoryEntry


def succeeded(
    deployment_id: str,
    version: str,
    *,
    commit: str,
    started_at: str,
    action: str = "deploy",
    slot: str = "blue",
    duration_s: float = 1.0,
    by: str = "me",
    release_id: str | None = None,
) -> HistoryEntry:
    """The history entry of operation ``deployment_id`` that brought ``version`` and succeeded."""
    return HistoryEntry(
        deployment_id=deployment_id,
        action=action,
        result="succeeded",
        version=version,
        commit=commit,
        slot=slot,
        started_at=started_at,
        duration_s=duration_s,
        by=by,
        release_id=release_id,
    )
