"""The RDS instance an AWS environment gets: on the AWS stand-in (moto's server on loopback)
what is created and how, drift, and what destroy removes; an instance that ends unusable from
recorded answers (botocore's Stubber)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import Stubber

from shipyard.config import RdsSection
from shipyard.errors import ShipyardError
from shipyard.providers.aws import AwsNames
from shipyard.providers.aws._database import DatabaseNotReady, RdsDatabase
from shipyard.providers.aws._network import AwsNetwork
from tests.aws_standin import (
    InstantClock,
    client,
    moto_server,
    standin_clients,
    two_subnets,
)

SUBNETS: list[str] = []


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        SUBNETS[:] = two_subnets(url)
        yield url


def _database(endpoint: str, environment: str, **rds: Any) -> RdsDatabase:
    clients = standin_clients(endpoint, subnets=SUBNETS, security_groups=[], rds=RdsSection(**rds))
    settings, names = clients.settings, AwsNames("shop", environment)
    assert settings.rds is not None
    network = AwsNetwork(names, settings, clients, port=8080, database=True)
    return RdsDatabase(
        names, settings, settings.rds, clients, network,
        database="events", user="app", clock=InstantClock(),
    )  # fmt: skip


def test_the_instance_is_created_encrypted_private_with_its_password_kept_by_rds(
    endpoint: str,
) -> None:
    database = _database(endpoint, "db")
    planned = [str(a) for a in database.plan()]
    rds = client("rds", endpoint)
    assert rds.describe_db_instances()["DBInstances"] == []  # plan changes nothing
    assert planned == [
        "rds: create DB subnet group shipyard-shop-db",
        "rds: create DB parameter group (postgres17) shipyard-shop-db",
        "rds: create PostgreSQL 17 instance (db.t4g.micro, 20 GiB, multi-AZ off, backups 7 days) "
        "shipyard-shop-db",
    ]
    assert [str(a) for a in database.ensure()] == planned
    instance = rds.describe_db_instances(DBInstanceIdentifier="shipyard-shop-db")["DBInstances"][0]
    assert instance["Engine"] == "postgres" and instance["DBName"] == "events"
    assert instance["MasterUsername"] == "app"
    assert instance["StorageEncrypted"] and not instance["PubliclyAccessible"]
    assert instance["BackupRetentionPeriod"] == 7 and instance["DeletionProtection"]
    assert instance["DBSubnetGroup"]["DBSubnetGroupName"] == "shipyard-shop-db"
    tags = {t["Key"]: t["Value"] for t in instance["TagList"]}
    assert (tags["shipyard:app"], tags["shipyard:env"]) == ("shop", "db")
    secret = database.master_secret_arn()
    assert secret is not None  # RDS keeps the password, not shipyard
    assert database.endpoint()[1] == 5432
    # Tasks get the URL without a password, and the password from RDS's secret.
    connection = database.connection()
    host = instance["Endpoint"]["Address"]
    assert connection.env == {"DATABASE_URL": f"postgres://app@{host}:5432/events?sslmode=require"}
    assert connection.secrets == {"PGPASSWORD": f"{secret}:password::"}
    assert connection.secret_arn == secret
    assert database.plan() == []


def test_settings_that_differ_are_applied_at_the_maintenance_window(endpoint: str) -> None:
    _database(endpoint, "drift").ensure()
    bigger = _database(endpoint, "drift", instance_class="db.t4g.small", backup_retention_days=14)
    assert [str(a) for a in bigger.plan()] == [
        "rds: modify instance at its next maintenance window (DBInstanceClass db.t4g.micro → "
        "db.t4g.small, BackupRetentionPeriod 7 → 14) shipyard-shop-drift"
    ]


def test_destroy_keeps_the_instance_unless_asked_and_protected_ones_always(endpoint: str) -> None:
    _database(endpoint, "gone").ensure()
    assert _database(endpoint, "gone").removal(instance=False) == []
    with pytest.raises(ShipyardError, match="has deletion protection: it was kept"):
        _database(endpoint, "gone").removal(instance=True)
    unprotected = _database(endpoint, "gone2", deletion_protection=False)
    unprotected.ensure()
    actions = unprotected.removal(instance=True)
    assert [a.verb.split(" (")[0] for a in actions] == ["delete instance"]
    for action in actions:
        action.run()
    snapshots = client("rds", endpoint).describe_db_snapshots()["DBSnapshots"]
    assert any(
        s["DBSnapshotIdentifier"].startswith("shipyard-shop-gone2-final-") for s in snapshots
    )


def _recorded(*states: str) -> tuple[RdsDatabase, Stubber]:
    database = _database("http://127.0.0.1:1", "stubbed")
    stub = Stubber(database.clients["rds"])
    for state in states:
        stub.add_response(
            "describe_db_instances",
            {
                "DBInstances": [
                    {"DBInstanceIdentifier": "shipyard-shop-stubbed", "DBInstanceStatus": state}
                ]
            },
            {"DBInstanceIdentifier": "shipyard-shop-stubbed"},
        )
    return database, stub


def test_an_instance_is_waited_for_until_available() -> None:
    database, stub = _recorded("creating", "backing-up", "available")
    with stub:
        assert database.wait_available(3600)["DBInstanceStatus"] == "available"
        stub.assert_no_pending_responses()


def test_an_instance_that_ends_unusable_stops_the_deploy() -> None:
    database, stub = _recorded("creating", "incompatible-network")
    with stub, pytest.raises(DatabaseNotReady, match="shipyard-shop-stubbed: incompatible-network"):
        database.wait_available(3600)
