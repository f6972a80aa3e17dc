"""The environment's Cloud SQL for PostgreSQL instance (``providers.gcp.cloud_sql``): what RDS
is to the AWS provider (``providers.aws._database`` and ``_snapshots``).

The instance is ``shipyard-<app>-<environment>`` in the environment's region, created with
daily backups and point-in-time recovery, the environment's labels, deletion protection (unless
the settings turn it off), SSL required and, without a ``private_network``, a public IP with no
authorized network that only Cloud SQL connectors may use (``connectorEnforcement: REQUIRED``;
Cloud Run's Cloud SQL connection is one); with one, a private IP in that VPC. An instance of
that name labelled as the environment's is adopted (an earlier deploy created it); one that is
not is refused. An instance the operator names (``instance``) is used as it is: never changed,
never deleted. The database and the user are created in it when missing; the user's password
is the caller's, sent only in the body that creates the user (or ``set_password``'s), and never
in a message. ``plan`` reads and lists what ``ensure`` does; on an instance of its own,
``ensure`` also applies a changed tier, a larger disk, the labels and deletion protection.

Cloud SQL answers a change with its own operation (``sql#operation``, not
``google.longrunning``): ``wait_sql_operation`` polls ``operations.get`` until its status is
``DONE``; ``error.errors`` then says it failed. Creating an instance takes minutes; one whose
creation fails, or which Cloud SQL suspends, is reported with its state, never waited on.

Backups before migrations are on-demand backup runs whose description starts with
``shipyard:<app>:<environment> ``: only those are listed, pruned (never the newest
``keep_newest``, never one younger than ``keep_days``) or counted; the automated daily backups
and anyone else's are left alone. Backup runs carry no labels, so the description is the mark.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from shipyard.database import SnapshotAge, plan_retention
from shipyard.errors import DatabaseError, ShipyardError, SnapshotError
from shipyard.gcp import GcpApi, GcpError, OperationFailed, QuotaExceeded
from shipyard.providers._actions import Action, carry_out
from shipyard.providers.gcp._names import GcpNames
from shipyard.waiting import Interval, wait_until

POLL = Interval(2.0, 1.5, 20.0)  # an instance takes minutes, a database seconds
_SERVICE = "cloudsql"
_NOT_FOUND, _CONFLICT = 404, 409
_DONE = "DONE"
_RUNNABLE = "RUNNABLE"
_SUCCESSFUL = "SUCCESSFUL"
# States an instance stays in until someone acts: waiting longer does not help.
_SETTLED = frozenset({_RUNNABLE, "FAILED", "SUSPENDED", "PENDING_DELETE"})
_RUN_ENDED = frozenset({_SUCCESSFUL, "FAILED", "SKIPPED", "DELETED", "DELETION_FAILED"})
# Cloud SQL refuses an instance past the project's limit with this legacy reason (403 or 409),
# not with google.rpc's RESOURCE_QUOTA_EXCEEDED (which GcpApi turns into QuotaExceeded itself).
_INSTANCE_LIMIT = "errorMaxInstancePerLabel"
_QUOTA_HELP = "https://cloud.google.com/sql/docs/quotas"
_SETTING = "providers.gcp.cloud_sql"


class CloudSqlNotReady(DatabaseError):
    """The instance is not RUNNABLE: its creation failed, Cloud SQL suspended it, or it did not
    become ready in time."""


class DeletionProtected(ShipyardError):
    """The instance may not be deleted: its deletion protection is on in the settings."""


@dataclass(frozen=True)
class CloudSqlBackup:
    """One of shipyard's on-demand backups of the instance (a backup run)."""

    id: str  # the backup run's id: an int64, as a string
    description: str  # what the caller said it was for (shipyard's mark removed)
    status: str  # SUCCESSFUL, RUNNING…
    created_at: str  # when it was enqueued: ISO 8601, UTC
    ended_at: str = ""  # when it finished ("" while it runs)

    def created(self) -> datetime:
        return datetime.fromisoformat(self.created_at.replace("Z", "+00:00"))


# -- Cloud SQL's operations ------------------------------------------------------------------------
def wait_sql_operation(
    api: GcpApi,
    project: str,
    operation: Mapping[str, Any],
    *,
    timeout: float,
    what: str,
    interval: Interval = POLL,
) -> dict[str, Any]:
    """The Cloud SQL operation ``operation`` (what a change answered), polled with
    ``operations.get`` until its status is ``DONE``, and returned done; ``OperationFailed``
    naming ``what`` with Cloud SQL's errors when it ended in some, or when ``timeout`` seconds
    passed first (the change may still complete)."""
    done = _poll_operation(api, project, operation, timeout=timeout, what=what, interval=interval)
    name = str(operation.get("name", ""))
    if done is None:
        raise OperationFailed(
            api.api, f"operation {name}", 0, f"{what} did not finish within {timeout:.0f}s",
            hint=f"it may still finish: gcloud sql operations describe {name}, then run the "
            "command again",
        )  # fmt: skip
    said = operation_errors(done)
    if said:
        raise OperationFailed(
            api.api, f"operation {name}", 0, f"{what} failed: {said}",
            hint="see Cloud SQL's message; nothing after this step was done",
        )  # fmt: skip
    return done


def operation_errors(operation: Mapping[str, Any]) -> str:
    """What a done Cloud SQL operation's ``error.errors`` say (``""``: it succeeded)."""
    error = operation.get("error")
    errors = error.get("errors") if isinstance(error, dict) else None
    said = [
        f"{e.get('message') or 'no message'} ({e.get('code') or 'no code'})"
        for e in errors or []
        if isinstance(e, dict)
    ]
    return "; ".join(said)


def _poll_operation(
    api: GcpApi,
    project: str,
    operation: Mapping[str, Any],
    *,
    timeout: float,
    what: str,
    interval: Interval,
) -> dict[str, Any] | None:
    """The operation once ``DONE``, or ``None`` after ``timeout`` seconds."""
    name = str(operation.get("name", ""))
    current: dict[str, Any] = dict(operation)

    def poll() -> dict[str, Any]:
        nonlocal current
        if current.get("status") != _DONE:
            path = f"v1/projects/{project}/operations/{name}"
            current = api.json("GET", path, what=what) or {}
        return current

    return wait_until(poll, timeout=timeout, interval=interval, clock=api.clock,
                      done=lambda seen: seen.get("status") == _DONE)  # fmt: skip


# -- the instance ----------------------------------------------------------------------------------
class CloudSql:
    """The environment's Cloud SQL instance, its database and its user (see the module).

    ``api``: a ``GcpApi("sqladmin", …)``; ``instance``: an existing instance to use instead of
    creating one; ``labels``: the operator's, to which shipyard adds its own. ``create_timeout``:
    seconds an instance may take to become RUNNABLE (and a settings change to apply);
    ``timeout``: a database, a user, a deletion; ``backup_timeout``: a backup or a restore;
    ``interval``: how often an operation is polled; ``final_backup_days``: how long the final
    backup of a deleted instance is kept."""

    def __init__(
        self,
        api: GcpApi,
        names: GcpNames,
        *,
        database: str,
        user: str,
        tier: str = "db-custom-1-3840",
        edition: str = "ENTERPRISE",
        version: str = "POSTGRES_17",
        disk_gb: int = 10,
        private_network: str | None = None,
        deletion_protection: bool = True,
        labels: Mapping[str, str] | None = None,
        instance: str | None = None,
        create_timeout: float = 1800.0,
        timeout: float = 600.0,
        backup_timeout: float = 3600.0,
        interval: Interval = POLL,
        final_backup_days: int = 30,
    ) -> None:
        self.api = api
        self.names = names
        self.database = database
        self.user = user
        self.tier = tier
        self.edition = edition
        self.version = version
        self.disk_gb = disk_gb
        self.private_network = private_network
        self.deletion_protection = deletion_protection
        self.labels = names.labels(dict(labels or {}))
        self.name = instance or names.instance
        self.named = instance is not None  # the operator's: used as it is
        self.create_timeout = create_timeout
        self.timeout = timeout
        self.backup_timeout = backup_timeout
        self.interval = interval
        self.final_backup_days = final_backup_days

    @property
    def connection_name(self) -> str:
        """``<project>:<region>:<instance>``: what Cloud Run's Cloud SQL volume mounts."""
        return f"{self.names.project}:{self.names.region}:{self.name}"

    @property
    def mark(self) -> str:
        """How the descriptions of shipyard's backups of this environment start."""
        return f"shipyard:{self.names.app}:{self.names.environment} "

    # -- plan and ensure -------------------------------------------------------------------------
    def plan(self) -> list[Action]:
        """What ``ensure`` would do; reads only (the actions need ``ensure``'s password)."""
        return self._actions(None)

    def ensure(self, *, password: str) -> list[Action]:
        """The instance RUNNABLE with the database and the user (created with ``password``
        when missing; an existing user's password is ``set_password``'s); what was done."""
        return carry_out(self._actions(password))

    def _actions(self, password: str | None) -> list[Action]:
        found = self._found()
        database = Action(_SERVICE, f"create database {self.database}", self._on,
                          self._create_database)  # fmt: skip
        user = Action(_SERVICE, f"create user {self.user}", self._on,
                      lambda: self._create_user(password))  # fmt: skip
        if found is None:
            return [Action(_SERVICE, self._creation, self.name, self._create), database, user]
        actions = []
        state = str(found.get("state", ""))
        if state != _RUNNABLE:  # its databases and users cannot be read yet: checked when run
            actions.append(Action(_SERVICE, f"wait until it is RUNNABLE (now {state})",
                                  self.name, lambda: self._wait_runnable(None)))  # fmt: skip
            return [*actions, *self._drift(found), database, user]
        actions += self._drift(found)
        if self.database not in self._databases():
            actions.append(database)
        if self.user not in self._users():
            actions.append(user)
        return actions

    @property
    def _creation(self) -> str:
        major = self.version.removeprefix("POSTGRES_")
        network = "private IP" if self.private_network else "public IP for connectors only"
        protection = "on" if self.deletion_protection else "off"
        return (
            f"create PostgreSQL {major} instance ({self.tier}, {self.edition}, "
            f"{self.disk_gb} GB SSD, daily backups and point-in-time recovery, {network}, "
            f"deletion protection {protection})"
        )

    def _body(self) -> dict[str, Any]:
        """The instance ``instances.insert`` creates (no root password: the postgres user
        cannot log in; the app's user is created next)."""
        ip: dict[str, Any] = {"sslMode": "ENCRYPTED_ONLY"}
        if self.private_network:
            ip |= {"ipv4Enabled": False, "privateNetwork": self.private_network}
        else:
            ip |= {"ipv4Enabled": True, "authorizedNetworks": []}
        settings = {
            "tier": self.tier,
            "edition": self.edition,
            "availabilityType": "ZONAL",
            "dataDiskSizeGb": str(self.disk_gb),
            "dataDiskType": "PD_SSD",
            "storageAutoResize": True,
            "deletionProtectionEnabled": self.deletion_protection,
            "backupConfiguration": {
                "enabled": True,
                "pointInTimeRecoveryEnabled": True,
                "transactionLogRetentionDays": 7,
                "backupRetentionSettings": {"retainedBackups": 7, "retentionUnit": "COUNT"},
            },
            "ipConfiguration": ip,
            "connectorEnforcement": "NOT_REQUIRED" if self.private_network else "REQUIRED",
            "userLabels": self.labels,
        }
        return {
            "name": self.name,
            "region": self.names.region,
            "databaseVersion": self.version,
            "settings": settings,
        }

    def _create(self) -> None:
        """Create the instance and wait until it is RUNNABLE. A 409 means the name is taken:
        by this environment's instance (another operator's deploy, or this request's earlier
        answer lost), which is waited for; otherwise refused."""
        try:
            response = self.api.request(
                "POST", f"v1/projects/{self.names.project}/instances", body=self._body(),
                idempotent=True, allow=(_CONFLICT,), what=self._what,
            )  # fmt: skip
        except GcpError as exc:
            if exc.reason == _INSTANCE_LIMIT:
                raise self._quota(exc.status, exc.message, exc.request) from exc
            raise
        if response.status_code != _CONFLICT:
            self._wait_runnable(response.json())
            return
        reason, message = _legacy(response)
        if reason == _INSTANCE_LIMIT:
            raise self._quota(_CONFLICT, message, f"POST instances ({self._what})")
        found = self.instance()
        if found is None:
            raise DatabaseError(
                f"{self._what} cannot be created: Cloud SQL keeps the name of a deleted "
                "instance reserved for up to a week",
                hint=f"name another instance in {_SETTING}.instance, or deploy again later",
            )
        self._check_ours(found)
        self._wait_runnable(None)

    def _quota(self, status: int, message: str, request: str) -> QuotaExceeded:
        return QuotaExceeded(
            self.api.api, request, status,
            f"the project's quota of Cloud SQL instances is reached: {message}",
            hint=f"ask for more ({_QUOTA_HELP}), or delete instances no longer used; nothing "
            "was created",
            reason=_INSTANCE_LIMIT,
        )  # fmt: skip

    def _wait_runnable(self, operation: Mapping[str, Any] | None) -> dict[str, Any]:
        """The instance once RUNNABLE, after ``operation`` (its creation) is done;
        ``CloudSqlNotReady`` naming its state as soon as it is in one that waiting does not
        change, or after ``create_timeout`` seconds."""
        clock = self.api.clock
        deadline = clock.now() + self.create_timeout
        if operation is not None:
            done = _poll_operation(
                self.api, self.names.project, operation, timeout=self.create_timeout,
                what=f"creating {self._what}", interval=self.interval,
            )  # fmt: skip
            if done is None:
                raise self._not_ready(self.instance(), self._late)
            said = operation_errors(done)
            if said:
                raise self._not_ready(self.instance(), f"its creation failed: {said}")
        found = wait_until(
            lambda: self.instance() or {}, timeout=max(0.0, deadline - clock.now()),
            interval=self.interval, clock=clock,
            done=lambda seen: not seen or seen.get("state") in _SETTLED,
        )  # fmt: skip
        if found is None:
            raise self._not_ready(self.instance(), self._late)
        if found.get("state") != _RUNNABLE:
            raise self._not_ready(found or None, "")
        return found

    @property
    def _late(self) -> str:
        return f"not RUNNABLE within {self.create_timeout:.0f}s"

    def _not_ready(self, found: Mapping[str, Any] | None, why: str) -> CloudSqlNotReady:
        state = str(found.get("state", "unknown")) if found is not None else "gone"
        reasons = ", ".join(str(r) for r in (found or {}).get("suspensionReason") or [])
        shown = f"{state} ({reasons})" if reasons else state
        hints = {
            "FAILED": f"see why: gcloud sql operations list --instance {self.name}; then "
            f"delete it (gcloud sql instances delete {self.name}) and deploy again",
            "SUSPENDED": "Cloud SQL suspended it (the project's billing?): see the instance "
            "in the Cloud Console",
            "PENDING_DELETE": "it is being deleted: deploy again once it is gone",
            "gone": "it was deleted meanwhile: deploy again",
        }
        return CloudSqlNotReady(
            f"{self._what} is {shown}" + (f": {why}" if why else ""),
            hint=hints.get(state, "it may still become ready: the next deploy waits for it "
                                  "again"),
        )  # fmt: skip

    def _drift(self, found: Mapping[str, Any]) -> list[Action]:
        """A change of the settings shipyard keeps on an instance of its own: the tier, a
        larger disk (never a smaller one: Cloud SQL cannot shrink it, and grows it itself),
        its labels, deletion protection."""
        if self.named:
            return []
        settings = found.get("settings") or {}
        changes: dict[str, Any] = {}
        said = []
        if settings.get("tier") != self.tier:
            changes["tier"] = self.tier
            said.append(f"tier {settings.get('tier')} → {self.tier} (it restarts)")
        disk = int(settings.get("dataDiskSizeGb") or 0)
        if disk < self.disk_gb:
            changes["dataDiskSizeGb"] = str(self.disk_gb)
            said.append(f"disk {disk} → {self.disk_gb} GB")
        labels = dict(settings.get("userLabels") or {})
        if any(labels.get(k) != v for k, v in self.labels.items()):
            changes["userLabels"] = {**labels, **self.labels}
            said.append("labels")
        protected = bool(settings.get("deletionProtectionEnabled"))
        if protected != self.deletion_protection:
            changes["deletionProtectionEnabled"] = self.deletion_protection
            said.append(f"deletion protection {'on' if self.deletion_protection else 'off'}")
        if not changes:
            return []
        return [Action(_SERVICE, f"change {', '.join(said)}", self.name,
                       lambda: self._patch(changes))]  # fmt: skip

    def _patch(self, settings: Mapping[str, Any]) -> None:
        operation = self.api.json(
            "PATCH", self._path, body={"settings": dict(settings)}, what=self._what
        )
        wait_sql_operation(
            self.api, self.names.project, operation or {}, timeout=self.create_timeout,
            what=f"changing the settings of {self._what}", interval=self.interval,
        )  # fmt: skip

    # -- the database and the user -----------------------------------------------------------
    def _databases(self) -> set[str]:
        found = self.api.json("GET", f"{self._path}/databases", what=f"databases {self._on}") or {}
        return {str(d.get("name")) for d in found.get("items") or []}

    def _users(self) -> set[str]:
        found = self.api.json("GET", f"{self._path}/users", what=f"users {self._on}") or {}
        return {str(u.get("name")) for u in found.get("items") or []}

    def _create_database(self) -> None:
        if self.database in self._databases():
            return
        body = {"name": self.database, "instance": self.name, "project": self.names.project}
        what = f"database {self.database} on {self._what}"
        operation = self.api.json("POST", f"{self._path}/databases", body=body, what=what)
        wait_sql_operation(self.api, self.names.project, operation or {}, timeout=self.timeout,
                           what=f"creating {what}", interval=self.interval)  # fmt: skip

    def _create_user(self, password: str | None) -> None:
        if self.user in self._users():
            return
        if not password:
            raise DatabaseError(f"user {self.user} of {self._what} needs a password to be created")
        what = f"user {self.user} of {self._what}"
        body = {"name": self.user, "password": password}
        operation = self.api.json("POST", f"{self._path}/users", body=body, what=what)
        wait_sql_operation(self.api, self.names.project, operation or {}, timeout=self.timeout,
                           what=f"creating {what}", interval=self.interval)  # fmt: skip

    def set_password(self, password: str) -> None:
        """Give the user ``password`` (``users.update``), waited for."""
        what = f"user {self.user} of {self._what}"
        operation = self.api.json(
            "PUT", f"{self._path}/users", body={"name": self.user, "password": password},
            query={"name": self.user}, what=what,
        )  # fmt: skip
        wait_sql_operation(
            self.api,
            self.names.project,
            operation or {},
            timeout=self.timeout,
            what=f"changing the password of {what}",
            interval=self.interval,
        )

    # -- reading the instance ----------------------------------------------------------------
    def instance(self) -> dict[str, Any] | None:
        """The instance as Cloud SQL describes it, or ``None``."""
        return self.api.json("GET", self._path, allow=(_NOT_FOUND,), what=self._what)

    def _found(self) -> dict[str, Any] | None:
        """The instance, checked to be the one to use: the operator's (which must exist, in
        the environment's region) or one labelled as this environment's."""
        found = self.instance()
        if found is None and self.named:
            raise DatabaseError(
                f"{self._what}, named by {_SETTING}.instance, does not exist in project "
                f"{self.names.project}",
                hint=f"create it, correct the name, or leave {_SETTING}.instance out for "
                f"shipyard to create {self.names.instance}",
            )
        if found is not None:
            self._check_ours(found)
        return found

    def _check_ours(self, found: Mapping[str, Any]) -> None:
        if self.named:
            named = found.get("connectionName")
            if named and named != self.connection_name:
                raise DatabaseError(
                    f"{self._what} is {named}, outside the environment's region",
                    hint="name an instance of the environment's region",
                )
            return
        labels = (found.get("settings") or {}).get("userLabels")
        if not self.names.owns(labels):
            raise DatabaseError(
                f"{self._what} exists and is not labelled as this environment's "
                f"(shipyard-app={self.names.app}, shipyard-env={self.names.environment})",
                hint=f"to use it as it is, name it in {_SETTING}.instance; otherwise delete or "
                "rename it",
            )

    def _own(self) -> dict[str, Any] | None:
        """The instance when shipyard created it for this environment (never the operator's)."""
        if self.named:
            return None
        found = self.instance()
        if found is None or not self.names.owns((found.get("settings") or {}).get("userLabels")):
            return None
        return found

    # -- backups -----------------------------------------------------------------------------
    def backup(self, description: str) -> CloudSqlBackup:
        """Take an on-demand backup described as ``description`` (after shipyard's mark) and
        wait until it is done; ``SnapshotError`` when it fails or takes longer than
        ``backup_timeout``."""
        full = f"{self.mark}{description}"
        what = f"on-demand backup of {self._what}"
        operation = self.api.json(
            "POST", f"{self._path}/backupRuns", body={"description": full}, what=what
        )
        done = _poll_operation(
            self.api,
            self.names.project,
            operation or {},
            timeout=self.backup_timeout,
            what=what,
            interval=self.interval,
        )
        hint = f"see the instance's operations (gcloud sql operations list --instance {self.name})"
        if done is None:
            raise SnapshotError(f"{what} did not finish within {self.backup_timeout:.0f}s",
                                hint=f"{hint}; deploy again once it is done")  # fmt: skip
        said = operation_errors(done)
        if said:
            raise SnapshotError(f"{what} failed: {said}", hint=hint)
        backup_id = str((done.get("backupContext") or {}).get("backupId") or "")
        found = self._backup_run(backup_id) if backup_id else self._described(full)
        if found is None or found.status != _SUCCESSFUL:
            state = found.status if found is not None else "not found"
            raise SnapshotError(f"{what} ended, and its backup run is {state}", hint=hint)
        return found

    def backups(self) -> list[CloudSqlBackup]:
        """shipyard's successful on-demand backups of this environment, oldest first."""
        found = [b for b in self._runs() if b.status == _SUCCESSFUL]
        return sorted(found, key=lambda b: (b.created(), int(b.id)))

    def prune(
        self,
        keep_days: float = 7,
        keep_newest: int = 3,
        *,
        protected: Iterable[str] = (),
        now: datetime | None = None,
    ) -> list[CloudSqlBackup]:
        """Delete shipyard's backups older than ``keep_days``, except the newest
        ``keep_newest`` and the ``protected`` ones (backup run ids: those taken before a
        retained release's migrations) (``database.plan_retention``); the ones deleted."""
        found = self.backups()
        plan = plan_retention(
            (SnapshotAge(b.id, b.created()) for b in found), now=now or datetime.now(UTC),
            retention_days=keep_days, keep_min=keep_newest, protected=protected,
        )  # fmt: skip
        doomed = [b for b in found if b.id in plan.delete]
        for backup in doomed:
            self._delete_run(backup.id)
        return doomed

    def restore(self, backup_id: str) -> None:
        """Restore backup run ``backup_id`` into the instance (replacing its data), waited."""
        what = f"restoring backup {backup_id} into {self._what}"
        found = self.api.json(
            "GET", f"{self._path}/backupRuns/{backup_id}", allow=(_NOT_FOUND,), what=what
        )
        if found is None or found.get("status") != _SUCCESSFUL:
            state = found.get("status") if found is not None else "not found"
            raise SnapshotError(
                f"{what}: the backup is {state}",
                hint=f"list the instance's backups: gcloud sql backups list --instance {self.name}",
            )
        context = {"backupRunId": backup_id, "instanceId": self.name,
                   "project": self.names.project}  # fmt: skip
        operation = self.api.json(
            "POST", f"{self._path}/restoreBackup", body={"restoreBackupContext": context},
            what=what,
        )  # fmt: skip
        try:
            wait_sql_operation(
                self.api,
                self.names.project,
                operation or {},
                timeout=self.backup_timeout,
                what=what,
                interval=self.interval,
            )
        except OperationFailed as exc:
            raise SnapshotError(exc.message, hint=exc.hint) from exc

    def _runs(self) -> list[CloudSqlBackup]:
        """Every backup run of the instance that is shipyard's for this environment."""
        runs: list[CloudSqlBackup] = []
        query: dict[str, str | int | bool] = {"maxResults": 500}
        while True:
            page = self.api.json(
                "GET", f"{self._path}/backupRuns", query=query, allow=(_NOT_FOUND,),
                what=f"backups of {self._what}",
            )  # fmt: skip
            if page is None:
                return []
            runs += [r for r in map(self._record, page.get("items") or []) if r is not None]
            if not page.get("nextPageToken"):
                return runs
            query["pageToken"] = str(page["nextPageToken"])

    def _record(self, run: Mapping[str, Any]) -> CloudSqlBackup | None:
        """``run`` as one of shipyard's backups, or ``None`` when it is not one."""
        description = str(run.get("description") or "")
        if run.get("type", "ON_DEMAND") != "ON_DEMAND" or not description.startswith(self.mark):
            return None
        return CloudSqlBackup(
            id=str(run.get("id", "")),
            description=description.removeprefix(self.mark),
            status=str(run.get("status", "")),
            created_at=_utc(str(run.get("enqueuedTime") or run.get("startTime") or "")),
            ended_at=_utc(str(run.get("endTime") or "")),
        )

    def _backup_run(self, backup_id: str) -> CloudSqlBackup | None:
        """Backup run ``backup_id`` once it has ended (Cloud SQL may say the operation is done
        a moment before the run)."""
        path = f"{self._path}/backupRuns/{backup_id}"

        def read() -> dict[str, Any]:
            what = f"backup {backup_id} of {self._what}"
            return self.api.json("GET", path, allow=(_NOT_FOUND,), what=what) or {}

        found = wait_until(
            read,
            timeout=self.timeout,
            interval=self.interval,
            clock=self.api.clock,
            done=lambda seen: not seen or seen.get("status") in _RUN_ENDED,
        )
        return self._record(found) if found else None

    def _described(self, description: str) -> CloudSqlBackup | None:
        """The newest of shipyard's backups described exactly as ``description``."""
        found = [b for b in self._runs() if f"{self.mark}{b.description}" == description]
        return max(found, key=lambda b: (b.created(), int(b.id)), default=None)

    def _delete_run(self, backup_id: str) -> None:
        what = f"backup {backup_id} of {self._what}"
        operation = self.api.json(
            "DELETE", f"{self._path}/backupRuns/{backup_id}", allow=(_NOT_FOUND,), what=what
        )
        if operation is not None:
            wait_sql_operation(self.api, self.names.project, operation, timeout=self.timeout,
                               what=f"deleting {what}", interval=self.interval)  # fmt: skip

    # -- removal -----------------------------------------------------------------------------
    def check_removable(self) -> None:
        """``DeletionProtected`` when the settings keep deletion protection on for an instance
        ``remove`` would delete; reads only (destroy asks before it removes anything)."""
        if self.deletion_protection and self._own() is not None:
            raise DeletionProtected(
                f"{self._what} has deletion protection on ({_SETTING}.deletion_protection): it "
                "was kept, and nothing was removed",
                hint=f"set {_SETTING}.deletion_protection: false, then run destroy --volumes "
                "again (shipyard turns the instance's protection off, then deletes it)",
            )

    def removal(self, *, final_backup: bool = True) -> list[Action]:
        """What ``remove`` would do: delete the instance if it is this environment's (an
        operator's instance is never deleted), after turning its protection off when the
        settings say so; refused (``check_removable``) while they keep it on."""
        found = self._own()
        if found is None or found.get("state") == "PENDING_DELETE":
            return []
        self.check_removable()
        actions = []
        if (found.get("settings") or {}).get("deletionProtectionEnabled"):
            actions.append(
                Action(
                    _SERVICE,
                    "turn deletion protection off",
                    self.name,
                    lambda: self._patch({"deletionProtectionEnabled": False}),
                )
            )
        kept = f"final backup kept {self.final_backup_days} days" if final_backup else "no backup"
        actions.append(Action(_SERVICE, f"delete instance and its backups ({kept})", self.name,
                              lambda: self._delete(final_backup=final_backup)))  # fmt: skip
        return actions

    def remove(self, final_backup: bool = True) -> list[Action]:
        """Delete the instance (``destroy --volumes``), waited; what was done."""
        return carry_out(self.removal(final_backup=final_backup))

    def _delete(self, *, final_backup: bool) -> None:
        query: dict[str, str | int | bool] = {}
        if final_backup:
            query = {
                "enableFinalBackup": True,
                "finalBackupTtlDays": self.final_backup_days,
                "finalBackupDescription": f"{self.mark}final",
            }
        operation = self.api.json(
            "DELETE", self._path, query=query, allow=(_NOT_FOUND,), what=self._what
        )
        if operation is not None:
            wait_sql_operation(self.api, self.names.project, operation, timeout=self.timeout,
                               what=f"deleting {self._what}", interval=self.interval)  # fmt: skip

    # -- names -------------------------------------------------------------------------------
    @property
    def _path(self) -> str:
        return f"v1/projects/{self.names.project}/instances/{self.name}"

    @property
    def _what(self) -> str:
        return f"Cloud SQL instance {self.name} ({self.names.region})"

    @property
    def _on(self) -> str:
        return f"on {self.name}"


def _legacy(response: httpx.Response) -> tuple[str, str]:
    """The first reason and the message of a legacy-shaped error answer."""
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        return "", response.reason_phrase
    errors = [e for e in error.get("errors") or [] if isinstance(e, dict)]
    reason = str(errors[0].get("reason", "")) if errors else ""
    return reason, str(error.get("message") or response.reason_phrase)


_FRACTION = re.compile(r"\.(\d{1,6})\d*")


def _utc(stamp: str) -> str:
    """A timestamp as Google writes it (RFC 3339, up to nanoseconds) in ISO 8601 UTC, to the
    millisecond; ``""`` stays ``""``."""
    if not stamp:
        return ""
    parsed = datetime.fromisoformat(_FRACTION.sub(r".\1", stamp).replace("Z", "+00:00"))
    return parsed.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
