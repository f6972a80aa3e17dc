"""The environment's Cloud SQL instance (``providers.gcp._sql``), against the GCP stand-in (held
to Google's discovery documents; ``tests.gcp.sql``): the instance created once with its
database and user, then found; plan reading only; a creation that fails or never ends, named by
the instance's state; the instance quota; on-demand backups, their retention and a restore;
deletion protection; the password sent only where it must be."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shipyard.errors import DatabaseError, SnapshotError
from shipyard.gcp import OperationFailed, QuotaExceeded
from shipyard.providers.gcp._names import GcpNames
from shipyard.providers.gcp._sql import CloudSql, CloudSqlNotReady, DeletionProtected
from shipyard.waiting import Clock
from tests.gcp.sql import SqlModel
from tests.gcp.standin import PROJECT, REGION, Session, gcp_session, quota_details, rpc_error
from tests.unit.fake_clock import FakeClock

NAMES = GcpNames(PROJECT, REGION, "shop", "production")
INSTANCE = "shipyard-shop-production"
OURS = {"shipyard-app": "shop", "shipyard-env": "production"}
PASSWORD = "Tr0ub4dor&3-horse"
INSERT = "sql.instances.insert"
CHANGES = (INSERT, "sql.instances.patch", "sql.instances.delete", "sql.databases.insert",
           "sql.users.insert", "sql.users.update", "sql.backupRuns.insert",
           "sql.backupRuns.delete", "sql.instances.restoreBackup")  # fmt: skip
MARK = "shipyard:shop:production "


@dataclass
class World:
    session: Session
    model: SqlModel
    clock: FakeClock

    def sql(self, **options: Any) -> CloudSql:
        api = self.session.api("sqladmin", clock=Clock(self.clock, self.clock.sleep))
        return CloudSql(api, NAMES, database="shop", user="shop", labels={"team": "web"},
                        **options)  # fmt: skip

    def changes(self) -> int:
        return sum(len(self.model.sent(method)) for method in CHANGES)

    def ready(self, **settings: Any) -> None:
        """The environment's instance, made by an earlier deploy, with its database and user."""
        settings = {
            "deletionProtectionEnabled": True,
            "backupConfiguration": {"enabled": True, "pointInTimeRecoveryEnabled": True},
            **settings,
        }
        made = self.model.add_instance(INSTANCE, labels={**OURS, "team": "web"}, **settings)
        made.databases.append("shop")
        made.users["shop"] = PASSWORD


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with gcp_session(tmp_path) as session:
        model = session.standin.add(SqlModel(session.standin))
        yield World(session, model, FakeClock())
        assert session.standin.invalid == []
        assert model.malformed == []


def test_the_first_ensure_creates_the_instance_its_database_and_its_user(world: World) -> None:
    world.model.create_polls = 2
    sql = world.sql()
    planned = [str(a) for a in sql.plan()]
    assert planned == [
        f"cloudsql: create PostgreSQL 17 instance (db-custom-1-3840, ENTERPRISE, 10 GB SSD, "
        f"daily backups and point-in-time recovery, public IP for connectors only, deletion "
        f"protection on) {INSTANCE}",
        f"cloudsql: create database shop on {INSTANCE}",
        f"cloudsql: create user shop on {INSTANCE}",
    ]
    assert world.changes() == 0  # plan reads only

    assert [str(a) for a in sql.ensure(password=PASSWORD)] == planned
    [insert] = world.model.sent(INSERT)
    body = insert.json()
    assert {k: body[k] for k in ("name", "region", "databaseVersion")} == {
        "name": INSTANCE, "region": REGION, "databaseVersion": "POSTGRES_17"}  # fmt: skip
    settings = body["settings"]
    assert settings["tier"] == "db-custom-1-3840" and settings["edition"] == "ENTERPRISE"
    assert settings["dataDiskSizeGb"] == "10" and settings["dataDiskType"] == "PD_SSD"
    assert settings["backupConfiguration"]["enabled"] is True
    assert settings["backupConfiguration"]["pointInTimeRecoveryEnabled"] is True
    assert settings["deletionProtectionEnabled"] is True
    assert settings["ipConfiguration"] == {
        "ipv4Enabled": True, "authorizedNetworks": [], "sslMode": "ENCRYPTED_ONLY"}  # fmt: skip
    assert settings["connectorEnforcement"] == "REQUIRED"
    assert settings["userLabels"] == {"team": "web", **OURS}
    assert "rootPassword" not in body

    made = world.model.instances[INSTANCE]
    assert made.state == "RUNNABLE" and "shop" in made.databases
    assert world.model.password(INSTANCE, "shop") == PASSWORD
    assert len(world.clock.sleeps) >= 2  # polled on the fake clock, never for real
    assert sql.connection_name == f"{PROJECT}:{REGION}:{INSTANCE}"

    # The password travels in the body that creates the user, and nowhere else.
    for method, call in world.model.calls:
        if method != "sql.users.insert":
            assert PASSWORD not in call.raw.decode() + str(call.query), method
    [user] = world.model.sent("sql.users.insert")
    assert user.json() == {"name": "shop", "password": PASSWORD}
    assert all(PASSWORD not in str(r.query) for r in world.session.standin.requests)


def test_a_second_ensure_changes_nothing(world: World) -> None:
    world.sql().ensure(password=PASSWORD)
    done = world.changes()
    again = world.sql()
    assert again.plan() == []
    assert again.ensure(password=PASSWORD) == []
    assert world.changes() == done


def test_plan_lists_what_is_missing_without_changing_it(world: World) -> None:
    world.model.add_instance(INSTANCE, labels={**OURS, "team": "web"},
                             deletionProtectionEnabled=True)  # fmt: skip
    sql = world.sql()
    assert [str(a) for a in sql.plan()] == [
        f"cloudsql: create database shop on {INSTANCE}",
        f"cloudsql: create user shop on {INSTANCE}",
    ]
    assert world.changes() == 0
    assert world.model.instances[INSTANCE].databases == ["postgres"]


def test_an_instance_of_the_environment_is_adopted_and_its_settings_applied(world: World) -> None:
    world.ready(tier="db-f1-micro", dataDiskSizeGb="20", deletionProtectionEnabled=False)
    world.model.instances[INSTANCE].settings["userLabels"] = {**OURS, "cost": "shared"}
    sql = world.sql(tier="db-custom-2-7680")
    [change] = sql.plan()
    assert str(change) == (
        f"cloudsql: change tier db-f1-micro → db-custom-2-7680 (it restarts), labels, deletion "
        f"protection on {INSTANCE}"
    )  # the disk (grown to 20 GB by Cloud SQL) is never shrunk to 10
    sql.ensure(password=PASSWORD)
    settings = world.model.instances[INSTANCE].settings
    assert settings["tier"] == "db-custom-2-7680" and settings["dataDiskSizeGb"] == "20"
    assert settings["deletionProtectionEnabled"] is True
    assert settings["userLabels"] == {**OURS, "cost": "shared", "team": "web"}
    assert world.model.sent(INSERT) == []
    assert world.sql(tier="db-custom-2-7680").plan() == []


def test_an_instance_of_that_name_not_labelled_as_the_environments_is_refused(
    world: World,
) -> None:
    world.model.add_instance(INSTANCE, labels={"owner": "data-team"})
    with pytest.raises(DatabaseError) as refused:
        world.sql().plan()
    assert "not labelled as this environment's" in refused.value.message
    assert "providers.gcp.cloud_sql.instance" in (refused.value.hint or "")


def test_an_instance_the_operator_names_is_used_as_it_is(world: World) -> None:
    world.model.add_instance("legacy-pg", tier="db-f1-micro")
    sql = world.sql(instance="legacy-pg")
    assert [str(a) for a in sql.ensure(password=PASSWORD)] == [
        "cloudsql: create database shop on legacy-pg",
        "cloudsql: create user shop on legacy-pg",
    ]
    assert world.model.instances["legacy-pg"].settings["tier"] == "db-f1-micro"  # unchanged
    assert sql.connection_name == f"{PROJECT}:{REGION}:legacy-pg"
    assert sql.removal() == []  # never deleted

    with pytest.raises(DatabaseError) as missing:
        world.sql(instance="legcy-pg").plan()
    assert "named by providers.gcp.cloud_sql.instance, does not exist" in missing.value.message


def test_a_private_network_gives_a_private_ip_only(world: World) -> None:
    vpc = f"projects/{PROJECT}/global/networks/apps"
    world.sql(private_network=vpc).ensure(password=PASSWORD)
    settings = world.model.sent(INSERT)[0].json()["settings"]
    assert settings["ipConfiguration"] == {
        "sslMode": "ENCRYPTED_ONLY", "ipv4Enabled": False, "privateNetwork": vpc}  # fmt: skip
    assert settings["connectorEnforcement"] == "NOT_REQUIRED"


def test_a_creation_that_fails_names_the_state_and_the_error(world: World) -> None:
    world.model.create_polls = 1
    world.model.create_error = {"code": "INTERNAL_ERROR",
                                "message": "An internal error has occurred."}  # fmt: skip
    with pytest.raises(CloudSqlNotReady) as failed:
        world.sql().ensure(password=PASSWORD)
    message = failed.value.message
    assert f"Cloud SQL instance {INSTANCE} ({REGION}) is FAILED" in message
    assert "its creation failed: An internal error has occurred. (INTERNAL_ERROR)" in message
    assert "gcloud sql instances delete" in (failed.value.hint or "")
    assert world.model.sent("sql.databases.insert") == []

    world.clock.sleeps.clear()  # the next deploy fails at once, without waiting
    sql = world.sql()
    assert str(sql.plan()[0]) == f"cloudsql: wait until it is RUNNABLE (now FAILED) {INSTANCE}"
    with pytest.raises(CloudSqlNotReady, match="is FAILED"):
        sql.ensure(password=PASSWORD)
    assert world.clock.sleeps == []


def test_an_instance_that_never_becomes_runnable_fails_in_its_time(world: World) -> None:
    world.model.create_stuck = True
    with pytest.raises(CloudSqlNotReady) as late:
        world.sql(create_timeout=900).ensure(password=PASSWORD)
    assert f"{INSTANCE} ({REGION}) is PENDING_CREATE: not RUNNABLE within 900s" in (
        late.value.message
    )
    assert "the next deploy waits for it again" in (late.value.hint or "")
    assert world.clock.now == pytest.approx(900)  # on the fake clock


@pytest.mark.parametrize("refusal", ["409", "403", "429"])
def test_the_instance_quota_is_reported_as_such_and_not_retried(world: World, refusal: str) -> None:
    if refusal == "429":  # google.rpc's shape, which GcpApi reads itself
        world.session.standin.fail(INSERT, rpc_error(
            429, "RESOURCE_EXHAUSTED", "Quota exceeded for instances in europe-west1",
            quota_details("RESOURCE_QUOTA_EXCEEDED", "InstancesPerProject"),
        ))  # fmt: skip
    else:  # Cloud SQL's legacy shape
        world.model.instance_limit, world.model.limit_status = 0, int(refusal)
    with pytest.raises(QuotaExceeded) as refused:
        world.sql().ensure(password=PASSWORD)
    expected = "InstancesPerProject" if refusal == "429" else "quota of Cloud SQL instances"
    assert expected in refused.value.message
    assert "nothing" in (refused.value.hint or "")
    inserts = [r for r in world.session.standin.requests if r.method == INSERT]
    assert len(inserts) == 1 and world.clock.sleeps == []
    assert INSTANCE not in world.model.instances


def test_a_name_reserved_by_a_deleted_instance_is_explained(world: World) -> None:
    world.model.reserved.add(INSTANCE)
    with pytest.raises(DatabaseError, match="reserved for up to a week"):
        world.sql().ensure(password=PASSWORD)


def test_a_creation_whose_answer_was_lost_waits_for_the_instance(world: World) -> None:
    world.model.create_polls = 2
    world.session.standin.lose_answer(INSERT)
    world.sql().ensure(password=PASSWORD)
    assert len(world.model.sent(INSERT)) == 2  # the repeat answered 409: found, ours
    assert world.model.instances[INSTANCE].state == "RUNNABLE"
    assert world.model.password(INSTANCE, "shop") == PASSWORD


def test_a_failed_change_names_what_and_why(world: World) -> None:
    world.model.add_instance(INSTANCE, labels={**OURS, "team": "web"},
                             deletionProtectionEnabled=True)  # fmt: skip
    world.model.change_error = {"code": "ERROR_INVALID_DATABASE_NAME", "message": "bad name"}
    with pytest.raises(OperationFailed) as failed:
        world.sql().ensure(password=PASSWORD)
    assert f"creating database shop on Cloud SQL instance {INSTANCE}" in failed.value.message
    assert "bad name (ERROR_INVALID_DATABASE_NAME)" in failed.value.message
    assert world.model.sent("sql.users.insert") == []  # nothing after it


def test_the_password_is_rotated_and_never_read_back(world: World) -> None:
    world.ready()
    sql = world.sql()
    sql.set_password("n3w-Passw0rd")
    assert world.model.password(INSTANCE, "shop") == "n3w-Passw0rd"
    [update] = world.model.sent("sql.users.update")
    assert update.query == {"name": "shop"}
    assert sql.plan() == []  # the users' list carries no password to compare


# -- backups -----------------------------------------------------------------------------------
@pytest.mark.parametrize("context", [True, False], ids=["backup-context", "by-description"])
def test_a_backup_is_taken_waited_for_and_listed(world: World, context: bool) -> None:
    world.ready()
    world.model.backup_polls = 2
    world.model.backup_context = context
    sql = world.sql()
    taken = sql.backup("1.4.0 abc1234 01JD pre-migrate")
    assert taken.status == "SUCCESSFUL"
    assert taken.description == "1.4.0 abc1234 01JD pre-migrate"
    run = world.model.instances[INSTANCE].runs[taken.id]
    assert run["description"] == f"{MARK}1.4.0 abc1234 01JD pre-migrate"
    assert run["type"] == "ON_DEMAND"
    assert taken.created() <= datetime.now(UTC)
    assert sql.backups() == [taken]


def test_a_failed_backup_is_a_snapshot_error(world: World) -> None:
    world.ready()
    world.model.backup_error = {"code": "BACKUP_FAILED", "message": "disk busy"}
    with pytest.raises(SnapshotError) as failed:
        world.sql().backup("1.4.0 pre-migrate")
    assert "on-demand backup of Cloud SQL instance" in failed.value.message
    assert "disk busy (BACKUP_FAILED)" in failed.value.message
    assert world.sql().backups() == []


@pytest.mark.parametrize(
    ("ages", "deleted"),
    [
        ([1, 3, 6, 8, 9, 30], [8, 9, 30]),  # the newest 3 are young anyway
        ([10, 20, 30, 40], [40]),  # all old: the newest 3 stay
        ([1, 2, 3, 4, 5], []),  # all young
    ],
)
def test_prune_keeps_the_newest_three_and_those_of_the_last_week(
    world: World, ages: list[int], deleted: list[int]
) -> None:
    world.ready()
    now = datetime.now(UTC)
    by_age = {
        age: world.model.add_backup_run(
            INSTANCE, description=f"{MARK}v{age}", enqueued=now - timedelta(days=age, hours=1)
        )
        for age in ages
    }
    old = now - timedelta(days=90)
    others = [  # never shipyard's to prune: automated, another environment's, by hand, failed
        world.model.add_backup_run(INSTANCE, kind="AUTOMATED", enqueued=old),
        world.model.add_backup_run(INSTANCE, description="shipyard:shop:staging v1", enqueued=old),
        world.model.add_backup_run(INSTANCE, description="before the upgrade", enqueued=old),
        world.model.add_backup_run(INSTANCE, description=f"{MARK}x", status="FAILED", enqueued=old),
    ]
    world.model.page_size = 2  # the runs are read in pages
    sql = world.sql()
    assert [b.description for b in sql.backups()] == [f"v{a}" for a in sorted(ages, reverse=True)]

    pruned = sql.prune(keep_days=7, keep_newest=3, now=now)
    assert sorted(b.id for b in pruned) == sorted(by_age[a] for a in deleted)
    left = set(world.model.instances[INSTANCE].runs)
    assert left == {by_age[a] for a in ages if a not in deleted} | set(others)


def test_restore_brings_back_the_databases_and_users_of_the_backup(world: World) -> None:
    world.ready()
    sql = world.sql()
    taken = sql.backup("1.4.0 pre-migrate")
    world.model.instances[INSTANCE].databases.append("scratch")
    sql.restore(taken.id)
    assert world.model.restored == [(INSTANCE, taken.id)]
    assert world.model.instances[INSTANCE].databases == ["postgres", "shop"]

    with pytest.raises(SnapshotError, match="the backup is not found"):
        sql.restore("1733499999000")


# -- removal -----------------------------------------------------------------------------------
def test_remove_is_refused_while_the_settings_keep_deletion_protection(world: World) -> None:
    world.ready()
    with pytest.raises(DeletionProtected) as refused:
        world.sql().remove(final_backup=True)
    assert "providers.gcp.cloud_sql.deletion_protection" in refused.value.message
    assert "deletion_protection: false" in (refused.value.hint or "")
    assert world.model.sent("sql.instances.delete") == []
    assert INSTANCE in world.model.instances


def test_remove_turns_protection_off_when_the_settings_do_and_deletes(world: World) -> None:
    world.ready()
    sql = world.sql(deletion_protection=False)
    sql.check_removable()
    assert [str(a) for a in sql.remove(final_backup=True)] == [
        f"cloudsql: turn deletion protection off {INSTANCE}",
        f"cloudsql: delete instance and its backups (final backup kept 30 days) {INSTANCE}",
    ]
    assert INSTANCE not in world.model.instances
    assert world.model.final_backups == [{
        "enableFinalBackup": "true", "finalBackupTtlDays": "30",
        "finalBackupDescription": f"{MARK}final",
    }]  # fmt: skip
    assert sql.remove(final_backup=True) == []  # gone: nothing more to do


def test_prune_keeps_the_backup_of_a_retained_release_whatever_its_age(world: World) -> None:
    world.ready()
    now = datetime.now(UTC)
    runs = [
        world.model.add_backup_run(
            INSTANCE, description=f"{MARK}v{age}", enqueued=now - timedelta(days=age, hours=1)
        )
        for age in (1, 2, 3, 30, 40)
    ]
    sql = world.sql()
    pruned = sql.prune(keep_days=7, keep_newest=3, protected={runs[3]}, now=now)
    assert [b.id for b in pruned] == [runs[4]]  # the 30-day-old one is a retained release's
