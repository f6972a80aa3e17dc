"""Which snapshots to keep: a pure plan, applied separately (``prune --dry-run`` shows the plan)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["RetentionPlan", "SnapshotAge", "plan_retention"]


@dataclass(frozen=True)
class SnapshotAge:
    """What retention needs to know about one snapshot."""

    name: str
    created_at: datetime
    deployment_id: str | None = None


@dataclass(frozen=True)
class RetentionPlan:
    keep: tuple[str, ...]  # newest first
    delete: tuple[str, ...]  # newest first
    reasons: tuple[tuple[str, str], ...]  # name → why it is kept or deleted

    def reason(self, name: str) -> str:
        return dict(self.reasons).get(name, "")


def plan_retention(
    snapshots: Iterable[SnapshotAge],
    *,
    now: datetime,
    retention_days: float,
    keep_min: int,
    protected: Iterable[str] = (),
) -> RetentionPlan:
    """Delete snapshots older than ``retention_days``, except the newest ``keep_min`` and the
    ``protected`` ones (names of snapshots, or deployment ids of retained releases)."""
    shielded = set(protected)
    ordered = sorted(snapshots, key=lambda s: (s.created_at, s.name), reverse=True)
    cutoff = now - timedelta(days=retention_days)
    keep: list[str] = []
    delete: list[str] = []
    reasons: list[tuple[str, str]] = []
    for index, snapshot in enumerate(ordered):
        if index < keep_min:
            why = f"one of the newest {keep_min}"
        elif snapshot.name in shielded or (
            snapshot.deployment_id is not None and snapshot.deployment_id in shielded
        ):
            why = "tied to a retained release"
        elif snapshot.created_at >= cutoff:
            why = f"younger than {retention_days:g} days"
        else:
            delete.append(snapshot.name)
            reasons.append((snapshot.name, f"older than {retention_days:g} days"))
            continue
        keep.append(snapshot.name)
        reasons.append((snapshot.name, why))
    return RetentionPlan(tuple(keep), tuple(delete), tuple(reasons))
