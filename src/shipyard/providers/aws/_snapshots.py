"""Manual RDS snapshots of an environment's database: taken before pending migrations, waited
for, tagged with what they were taken for, and pruned by shipyard's retention (``snapshots.
retention_days``, the newest ``snapshots.keep_min`` always kept) — the rules snapshots follow on
Docker hosts (``database.plan_retention``). Only snapshots tagged as this environment's are
listed or deleted: RDS's automated backups and anyone else's snapshots are never touched.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shipyard.database import RetentionPlan, SnapshotAge, plan_retention
from shipyard.errors import ShipyardError
from shipyard.providers.aws._infrastructure import Clients
from shipyard.providers.aws._settings import AwsNames
from shipyard.waiting import Clock, Interval, wait_until

_FAILED = frozenset({"failed", "incompatible-restore", "incompatible-parameters"})


@dataclass(frozen=True)
class RdsSnapshot:
    """One manual snapshot of the environment's instance, as its tags describe it."""

    name: str
    status: str
    created_at: datetime
    version: str
    commit: str
    deployment_id: str | None
    reason: str
    size: int = 0  # bytes: the instance's allocated storage when it was taken


class SnapshotFailed(ShipyardError):
    """A snapshot ended in error or did not finish in time: nothing after it ran."""


class RdsSnapshots:
    """The manual snapshots of ``instance`` (an RDS DB instance identifier)."""

    def __init__(
        self, names: AwsNames, instance: str, clients: Clients, *, clock: Clock | None = None
    ) -> None:
        self.names = names
        self.instance = instance
        self.clients = clients
        self.clock = clock or Clock()

    def _call(self, action: str, what: str, /, **params: Any) -> Any:
        return self.clients.call("rds", action, what, **params)

    def take(
        self,
        *,
        version: str,
        commit: str,
        deployment_id: str,
        reason: str,
        timeout: float,
        now: datetime | None = None,
    ) -> RdsSnapshot:
        """Take a snapshot and wait until RDS reports it available (``SnapshotFailed`` when it
        fails, or is not available within ``timeout`` seconds)."""
        stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
        name = f"{self.names.stem}-{stamp}-{deployment_id[-6:]}".lower()
        tags = self.names.tags(
            {
                "shipyard:version": version,
                "shipyard:commit": commit,
                "shipyard:deployment": deployment_id,
                "shipyard:reason": reason,
            }
        )
        self._call(
            "CreateDBSnapshot", name,
            DBSnapshotIdentifier=name, DBInstanceIdentifier=self.instance,
            Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
        )  # fmt: skip

        def status() -> str:
            found = self._call("DescribeDBSnapshots", name,
                               DBSnapshotIdentifier=name)  # fmt: skip
            snapshots = found.get("DBSnapshots") or [{}]
            return str(snapshots[0].get("Status", "missing"))

        ended = wait_until(
            status,
            timeout=timeout,
            interval=Interval(2.0, 1.5, 15.0),
            clock=self.clock,
            done=lambda s: s == "available" or s in _FAILED,
        )
        if ended != "available":
            why = f"ended {ended}" if ended in _FAILED else f"not available within {timeout:g}s"
            raise SnapshotFailed(
                f"RDS snapshot {name} of {self.instance} {why}; no migration ran",
                hint="see the instance's events in the RDS console; deploy again once it is fine",
            )
        return next(s for s in self.snapshots() if s.name == name)

    def snapshots(self) -> list[RdsSnapshot]:
        """This environment's manual snapshots of the instance, oldest first."""
        found = self._call("DescribeDBSnapshots", self.instance,
                           DBInstanceIdentifier=self.instance, SnapshotType="manual")  # fmt: skip
        snapshots = []
        for item in found.get("DBSnapshots") or []:
            tags = {t["Key"]: t["Value"] for t in item.get("TagList", [])}
            if not self.names.owns(tags):
                continue
            created = item.get("SnapshotCreateTime") or datetime.now(UTC)  # still being created
            snapshots.append(
                RdsSnapshot(
                    name=item["DBSnapshotIdentifier"],
                    status=item.get("Status", ""),
                    created_at=created.astimezone(UTC),
                    version=tags.get("shipyard:version", ""),
                    commit=tags.get("shipyard:commit", ""),
                    deployment_id=tags.get("shipyard:deployment"),
                    reason=tags.get("shipyard:reason", ""),
                    size=int(item.get("AllocatedStorage") or 0) * 2**30,
                )
            )
        return sorted(snapshots, key=lambda s: (s.created_at, s.name))

    def retention(
        self,
        *,
        retention_days: float,
        keep_min: int,
        protected: Iterable[str] = (),
        now: datetime | None = None,
    ) -> RetentionPlan:
        """Which snapshots retention keeps and deletes (``database.plan_retention``)."""
        return plan_retention(
            (SnapshotAge(s.name, s.created_at, s.deployment_id) for s in self.snapshots()),
            now=now or datetime.now(UTC),
            retention_days=retention_days,
            keep_min=keep_min,
            protected=protected,
        )

    def prune(self, plan: RetentionPlan) -> list[str]:
        """Delete what ``plan`` deletes; returns the names deleted."""
        for name in plan.delete:
            self._call("DeleteDBSnapshot", name, DBSnapshotIdentifier=name)
        return list(plan.delete)
