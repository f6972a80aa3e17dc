"""RDS snapshots of an AWS environment's database: against the AWS stand-in (moto's server on
loopback) for taking, tagging, listing and retention; a snapshot that fails or never finishes,
which the stand-in cannot do, from recorded answers (botocore's Stubber)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.stub import Stubber

from shipyard.providers.aws import AwsNames, Clients, RdsSnapshots, SnapshotFailed
from tests.aws_standin import (
    InstantClock,
    client,
    moto_server,
    standin_clients,
)

INSTANCE = "shipyard-shop-production"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        client("rds", url).create_db_instance(
            DBInstanceIdentifier=INSTANCE, Engine="postgres", EngineVersion="17.2",
            DBInstanceClass="db.t4g.micro", AllocatedStorage=20, MasterUsername="app",
            MasterUserPassword="not-a-real-pw-1",
        )  # fmt: skip
        yield url


def _clients(endpoint: str | None) -> Clients:
    return standin_clients(endpoint)


def _snapshots(endpoint: str, environment: str = "production") -> RdsSnapshots:
    return RdsSnapshots(AwsNames("shop", environment), INSTANCE, _clients(endpoint))


def test_a_snapshot_is_taken_tagged_and_listed_as_the_environments(endpoint: str) -> None:
    snapshots = _snapshots(endpoint, "tagged")
    taken = snapshots.take(
        version="1.4.0", commit="abc1234", deployment_id="20261204T170000-1a2b3c",
        reason="before migrations 3→5", timeout=60,
    )  # fmt: skip
    assert taken.status == "available"
    assert taken.name.startswith("shipyard-shop-tagged-")
    assert (taken.version, taken.commit, taken.reason) == (
        "1.4.0",
        "abc1234",
        "before migrations 3→5",
    )
    assert taken.deployment_id == "20261204T170000-1a2b3c"
    # Someone else's manual snapshot of the same instance is not the environment's.
    client("rds", endpoint).create_db_snapshot(
        DBSnapshotIdentifier="handmade", DBInstanceIdentifier=INSTANCE
    )
    assert [s.name for s in snapshots.snapshots()] == [taken.name]
    assert _snapshots(endpoint, "other").snapshots() == []


def test_retention_keeps_the_newest_and_the_young_and_deletes_the_rest(endpoint: str) -> None:
    snapshots = _snapshots(endpoint, "retained")
    taken = [
        snapshots.take(
            version=f"1.{i}.0", commit=f"c{i}", deployment_id=f"d-{i:06d}", reason="test",
            timeout=60, now=datetime(2026, 12, 1, 12, i, tzinfo=UTC),
        )
        for i in range(5)
    ]  # fmt: skip
    names = [s.name for s in taken]
    assert [s.name for s in snapshots.snapshots()] == names
    young = snapshots.retention(retention_days=7, keep_min=3)
    assert young.delete == ()  # all taken just now
    later = datetime.now(UTC) + timedelta(days=8)
    plan = snapshots.retention(retention_days=7, keep_min=3, protected=["d-000000"], now=later)
    assert set(plan.keep) == {names[0], *names[2:]}  # the newest 3, and a retained release's
    assert plan.delete == (names[1],)
    assert snapshots.prune(plan) == [names[1]]
    assert [s.name for s in snapshots.snapshots()] == [names[0], *names[2:]]
    remaining = client("rds", endpoint).describe_db_snapshots(DBInstanceIdentifier=INSTANCE)
    assert names[1] not in [s["DBSnapshotIdentifier"] for s in remaining["DBSnapshots"]]


def _recorded(statuses: list[str]) -> tuple[RdsSnapshots, Any]:
    clients = _clients("http://127.0.0.1:1")
    rds = clients["rds"]
    stub = Stubber(rds)
    stub.add_response(
        "create_db_snapshot", {"DBSnapshot": {"DBSnapshotIdentifier": "x", "Status": "creating"}}
    )
    for status in statuses:
        stub.add_response(
            "describe_db_snapshots",
            {"DBSnapshots": [{"DBSnapshotIdentifier": "x", "Status": status}]},
        )
    stub.activate()
    return RdsSnapshots(
        AwsNames("shop", "production"), INSTANCE, clients, clock=InstantClock()
    ), stub


def test_a_snapshot_that_fails_stops_before_any_migration() -> None:
    snapshots, stub = _recorded(["creating", "creating", "failed"])
    with pytest.raises(SnapshotFailed, match=r"ended failed; no migration ran"):
        snapshots.take(version="1", commit="c", deployment_id="d-1", reason="r", timeout=600)
    stub.assert_no_pending_responses()


def test_a_snapshot_that_never_finishes_is_given_up_at_its_timeout() -> None:
    snapshots, _stub = _recorded(["creating"] * 40)
    with pytest.raises(SnapshotFailed, match=r"not available within 60s; no migration ran"):
        snapshots.take(version="1", commit="c", deployment_id="d-1", reason="r", timeout=60)
