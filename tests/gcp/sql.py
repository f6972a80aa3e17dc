"""The GCP stand-in's Cloud SQL Admin API v1 (``tests.gcp.standin``): instances, databases,
users, on-demand backup runs and Cloud SQL's own operations, as ``providers.gcp._sql`` uses them.

=======================================  ==========================================================
Method (discovery id)                    What the stand-in does
=======================================  ==========================================================
``sql.instances.insert``                 an instance, PENDING_CREATE until its operation is done
                                         (after ``create_polls`` reads), then RUNNABLE; or FAILED
                                         with the operation's error (``create_error``); or never
                                         done (``create_stuck``). A name in use (or reserved by a
                                         deleted instance): 409 ``instanceAlreadyExists``; the
                                         project's limit (``instance_limit``) reached:
                                         ``limit_status`` (409, as gcloud's tests have it, or 403
                                         as seen in the wild) ``errorMaxInstancePerLabel``; a
                                         tier its edition does not offer, a bad name or label,
                                         output-only fields: 400
``sql.instances.get``                    the instance with its output-only fields; 404
                                         ``instanceDoesNotExist``; another project: 403
                                         ``notAuthorized``
``sql.instances.patch``                  ``settings`` merged (a map such as ``userLabels``
                                         replaced), ``settingsVersion`` + 1, when its operation is
                                         done
``sql.instances.delete``                 400 while ``deletionProtectionEnabled``; else
                                         PENDING_DELETE, gone when done, its name then reserved;
                                         a final backup asked is recorded (``final_backups``)
``sql.instances.restoreBackup``          the databases and users as they were when the backup run
                                         (``restoreBackupContext.backupRunId``) was taken; 404 for
                                         an unknown run, 400 for one that did not succeed
``sql.databases.list``/``insert``        ``postgres`` and those created; 400 while the instance
                                         is not RUNNABLE (as Cloud SQL answers); a name in use: 409
``sql.users.list``/``insert``           users without their password (the API never returns it)
``sql.users.update``                     a new password; the user's ``name`` in the query
``sql.backupRuns.insert``                an ON_DEMAND run, ENQUEUED, SUCCESSFUL (or FAILED with
                                         ``backup_error``) when its operation is done after
                                         ``backup_polls`` reads; the operation carries
                                         ``backupContext.backupId`` unless ``backup_context`` is off
``sql.backupRuns.list``/``get``         newest first by ``enqueuedTime``, in pages of
                                         ``maxResults`` (at most ``page_size``); 404 for an
                                         unknown id
``sql.backupRuns.delete``                the run gone when its operation is done
``sql.operations.get``                   ``sql#operation``: PENDING as the change answers it,
                                         RUNNING while polled, DONE after the reads asked; a
                                         failure is ``error.errors[{code, message}]``
=======================================  ==========================================================

Every change other than an instance's creation, backup or restore is done after
``operation_polls`` reads of its operation, or fails with ``change_error``, changing nothing.
An operation advances on its own reads, and on reads of its instance (time passes for an
operation nobody polls: a lost answer). Every answer is checked against the method's response
schema; ``malformed`` lists what did not match.

Not modelled: one administrative operation at a time per instance (409
``operationInProgress``), maintenance, replicas, IAM users. What Cloud SQL answers to a database
or user that exists already is not documented: the stand-in says 409.
"""

from __future__ import annotations

import copy
import itertools
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

from tests.gcp.discovery import discovery
from tests.gcp.standin import (
    CLIENT_EMAIL,
    PROJECT,
    REGION,
    Call,
    GcpStandIn,
    Handler,
    Reply,
    legacy_error,
    now,
)

_BASE = "https://sqladmin.googleapis.com/v1"
_NAME = re.compile(r"[a-z]([-a-z0-9]{0,96}[a-z0-9])?")
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
_OUTPUT_ONLY = ("state", "connectionName", "createTime", "selfLink", "ipAddresses", "gceZone")
_SERVICE_ACCOUNT = "p461803952211-abc123@gcp-sa-cloud-sql.iam.gserviceaccount.com"
_NOT_RUNNING = "Invalid request since instance is not running."
_PROTECTED = (
    "Invalid request: The instance is protected. Please disable the deletion protection and try "
    "again. To disable deletion protection, update the instance settings with "
    "deletionProtectionEnabled set to false."
)
_LIMIT = (
    "Failed to create instance because the project or creator has reached the max instance per "
    "project/creator limit."
)

Errors = list[dict[str, str]]  # an operation's error.errors


@dataclass
class _Operation:
    name: str
    kind: str  # operationType
    target: str  # the instance
    polls: int  # reads before it is done
    effect: Callable[[], Errors | None]  # applied once, when done: its errors, if any
    never: bool = False
    status: str = "PENDING"
    inserted: str = field(default_factory=now)
    started: str = ""
    ended: str = ""
    errors: Errors | None = None
    backup_id: str | None = None  # shown as backupContext.backupId

    def advance(self) -> None:
        if self.status == "DONE":
            return
        if not self.started:
            self.started = now()
        if self.never or self.polls > 0:
            self.polls -= 1
            self.status = "RUNNING"
            return
        self.errors = self.effect()
        self.status, self.ended = "DONE", now()

    def view(self) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "kind": "sql#operation", "name": self.name, "status": self.status,
            "operationType": self.kind, "targetId": self.target, "targetProject": PROJECT,
            "targetLink": f"{_BASE}/projects/{PROJECT}/instances/{self.target}",
            "selfLink": f"{_BASE}/projects/{PROJECT}/operations/{self.name}",
            "insertTime": self.inserted, "user": CLIENT_EMAIL,
        }  # fmt: skip
        if self.started:
            shown["startTime"] = self.started
        if self.ended:
            shown["endTime"] = self.ended
        if self.errors:
            shown["error"] = {
                "kind": "sql#operationErrors",
                "errors": [{"kind": "sql#operationError", **e} for e in self.errors],
            }
        if self.backup_id is not None:
            shown["backupContext"] = {"kind": "sql#backupContext", "backupId": self.backup_id}
        return shown


@dataclass
class _Instance:
    resource: dict[str, Any]  # as sent, with the output-only fields
    state: str
    databases: list[str] = field(default_factory=lambda: ["postgres"])
    users: dict[str, str] = field(default_factory=lambda: {"postgres": ""})  # name → password
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)  # backup runs by id
    contents: dict[str, tuple[list[str], dict[str, str]]] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)  # its operations not done

    @property
    def name(self) -> str:
        return str(self.resource["name"])

    @property
    def settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = self.resource.setdefault("settings", {})
        return settings


class SqlModel:
    """Cloud SQL instances by name, their databases, users and backup runs, the operations
    changing them, and what a test scripts of them."""

    apis = ("sqladmin",)

    def __init__(self, standin: GcpStandIn) -> None:
        self.standin = standin
        self.instances: dict[str, _Instance] = {}
        self.operations: dict[str, _Operation] = {}
        self.reserved: set[str] = set()  # names of deleted instances
        self.create_polls = 0
        self.create_error: dict[str, str] | None = None  # {code, message}: the creation fails
        self.create_stuck = False  # the creation never ends
        self.instance_limit: int | None = None  # instances the project may still create
        self.limit_status = 409
        self.operation_polls = 0
        self.backup_polls = 1
        self.backup_error: dict[str, str] | None = None
        self.backup_context = True
        self.change_error: dict[str, str] | None = None  # later changes' operations end in it
        self.page_size = 100
        self.calls: list[tuple[str, Call]] = []  # every request, by discovery id
        self.malformed: list[str] = []
        self.final_backups: list[dict[str, str]] = []
        self.restored: list[tuple[str, str]] = []  # (instance, backup run id)
        self._run_ids = itertools.count(1733400000000, 1000)

    def routes(self) -> dict[str, Handler]:
        handlers: dict[str, Handler] = {
            "sql.instances.get": self._instance_get,
            "sql.instances.insert": self._instance_insert,
            "sql.instances.patch": self._instance_patch,
            "sql.instances.delete": self._instance_delete,
            "sql.instances.restoreBackup": self._restore,
            "sql.operations.get": self._operation_get,
            "sql.databases.list": self._database_list,
            "sql.databases.insert": self._database_insert,
            "sql.users.list": self._user_list,
            "sql.users.insert": self._user_insert,
            "sql.users.update": self._user_update,
            "sql.backupRuns.insert": self._run_insert,
            "sql.backupRuns.list": self._run_list,
            "sql.backupRuns.get": self._run_get,
            "sql.backupRuns.delete": self._run_delete,
        }
        return {method: self._checked(method, h) for method, h in handlers.items()}

    def _checked(self, method: str, handler: Handler) -> Handler:
        """``handler``, its requests recorded and its answers held to the method's schema."""
        schema = _response_schemas()[method]

        def answer(call: Call) -> Reply:
            self.calls.append((method, call))
            reply = handler(call)
            if reply.status < 300 and isinstance(reply.body, dict):
                problems = discovery("sqladmin").check_value(reply.body, schema)
                self.malformed += [f"{method}: {p}" for p in problems]
            return reply

        return answer

    # --- what tests script ---
    def add_instance(
        self,
        name: str,
        *,
        labels: dict[str, str] | None = None,
        state: str = "RUNNABLE",
        region: str = REGION,
        **settings: Any,
    ) -> _Instance:
        """An instance made before the test (by an earlier deploy, or by someone else)."""
        body = {"name": name, "region": region, "databaseVersion": "POSTGRES_17",
                "settings": {"tier": "db-custom-1-3840", "edition": "ENTERPRISE",
                             "dataDiskSizeGb": "10", "deletionProtectionEnabled": False,
                             "userLabels": labels or {}, **settings}}  # fmt: skip
        made = _Instance(self._resource(body), state)
        self.instances[name] = made
        return made

    def add_backup_run(
        self,
        instance: str,
        *,
        description: str = "",
        enqueued: datetime | None = None,
        kind: str = "ON_DEMAND",
        status: str = "SUCCESSFUL",
    ) -> str:
        """A backup run of ``instance`` taken before the test; its id."""
        stamp = _stamp(enqueued or datetime.now(UTC))
        run = self._run(self.instances[instance], description, stamp, kind)
        run.update(status=status, startTime=stamp, endTime=stamp)
        return str(run["id"])

    def password(self, instance: str, user: str) -> str:
        return self.instances[instance].users[user]

    def sent(self, method: str) -> list[Call]:
        return [call for m, call in self.calls if m == method]

    # --- instances ---
    def _instance(self, call: Call) -> _Instance:
        if call.params["project"] != PROJECT:
            raise legacy_error(403, "notAuthorized",
                               "The client is not authorized to make this request.")  # fmt: skip
        found = self.instances.get(call.params["instance"])
        if found is not None:
            for name in list(found.pending):  # time passes for operations nobody polls
                self.operations[name].advance()
        found = self.instances.get(call.params["instance"])
        if found is None:
            raise legacy_error(
                404, "instanceDoesNotExist", "The Cloud SQL instance does not exist."
            )
        return found

    def _running(self, call: Call) -> _Instance:
        found = self._instance(call)
        if found.state != "RUNNABLE":
            raise legacy_error(400, "invalid", _NOT_RUNNING)
        return found

    def _resource(self, body: dict[str, Any]) -> dict[str, Any]:
        name, region = body["name"], body.setdefault("region", "us-central1")
        settings = body.setdefault("settings", {})
        settings.update(kind="sql#settings", settingsVersion="1")
        settings.setdefault("backupConfiguration", {"enabled": False})
        settings.setdefault("ipConfiguration", {"ipv4Enabled": True})
        return {
            **body, "kind": "sql#instance", "project": PROJECT, "backendType": "SECOND_GEN",
            "instanceType": "CLOUD_SQL_INSTANCE", "connectionName": f"{PROJECT}:{region}:{name}",
            "selfLink": f"{_BASE}/projects/{PROJECT}/instances/{name}", "gceZone": f"{region}-b",
            "createTime": now(), "databaseInstalledVersion": "POSTGRES_17_5",
            "serviceAccountEmailAddress": _SERVICE_ACCOUNT,
        }  # fmt: skip

    def view(self, instance: _Instance) -> dict[str, Any]:
        """An instance as the API answers it."""
        shown = copy.deepcopy(instance.resource)
        shown["state"] = instance.state
        if instance.state == "RUNNABLE" and shown["settings"]["ipConfiguration"].get("ipv4Enabled"):
            shown["ipAddresses"] = [{"type": "PRIMARY", "ipAddress": "34.76.10.21"}]
        return shown

    def _instance_get(self, call: Call) -> Reply:
        return Reply(200, self.view(self._instance(call)))

    def _instance_insert(self, call: Call) -> Reply:
        if call.params["project"] != PROJECT:
            raise legacy_error(403, "notAuthorized",
                               "The client is not authorized to make this request.")  # fmt: skip
        body = call.json()
        problems = _instance_problems(body)
        if problems:
            raise legacy_error(400, "invalid", "Invalid request: " + "; ".join(problems))
        name = body["name"]
        if name in self.instances or name in self.reserved:
            raise legacy_error(
                409, "instanceAlreadyExists", "The Cloud SQL instance already exists."
            )
        if self.instance_limit is not None and self.instance_limit <= 0:
            raise legacy_error(self.limit_status, "errorMaxInstancePerLabel", _LIMIT)
        if self.instance_limit is not None:
            self.instance_limit -= 1
        made = _Instance(self._resource(body), "PENDING_CREATE")
        self.instances[name] = made
        error = self.create_error

        def created() -> Errors | None:
            made.state = "FAILED" if error else "RUNNABLE"
            return [error] if error else None

        operation = self._start(made, "CREATE", created, polls=self.create_polls,
                                never=self.create_stuck)  # fmt: skip
        return Reply(200, operation.view())

    def _instance_patch(self, call: Call) -> Reply:
        found = self._instance(call)
        body = call.json()
        unknown = set(body) - {"settings"}
        if unknown:
            raise legacy_error(400, "invalid", f"Invalid request: {sorted(unknown)} not patched")

        def patched() -> Errors | None:
            settings = found.settings
            settings.update(body.get("settings") or {})
            settings["settingsVersion"] = str(int(settings["settingsVersion"]) + 1)
            return None

        return Reply(200, self._start(found, "UPDATE", patched).view())

    def _instance_delete(self, call: Call) -> Reply:
        found = self._instance(call)
        if found.settings.get("deletionProtectionEnabled"):
            raise legacy_error(400, "invalid", _PROTECTED)
        if call.query.get("enableFinalBackup") == "true":
            self.final_backups.append(dict(call.query))
        found.state = "PENDING_DELETE"

        def deleted() -> Errors | None:
            self.instances.pop(found.name, None)
            self.reserved.add(found.name)
            return None

        return Reply(200, self._start(found, "DELETE", deleted).view())

    def _restore(self, call: Call) -> Reply:
        found = self._running(call)
        context = call.json().get("restoreBackupContext") or {}
        source = self.instances.get(context.get("instanceId") or found.name)
        run = source.runs.get(str(context.get("backupRunId"))) if source else None
        if source is None or run is None:
            raise legacy_error(404, "notFound", "The backup run does not exist.")
        if run["status"] != "SUCCESSFUL":
            raise legacy_error(400, "invalid", "Invalid request: the backup run did not succeed.")

        def restored() -> Errors | None:
            databases, users = source.contents.get(run["id"], (["postgres"], {"postgres": ""}))
            found.databases, found.users = list(databases), dict(users)
            self.restored.append((found.name, str(run["id"])))
            return None

        operation = self._start(found, "RESTORE_VOLUME", restored, polls=self.backup_polls)
        return Reply(200, operation.view())

    # --- operations ---
    def _start(
        self,
        instance: _Instance,
        kind: str,
        effect: Callable[[], Errors | None],
        *,
        polls: int | None = None,
        never: bool = False,
    ) -> _Operation:
        name = str(uuid.uuid4())

        error = self.change_error if kind not in ("CREATE", "BACKUP_VOLUME") else None

        def done() -> Errors | None:
            instance.pending.remove(name)
            return [error] if error else effect()

        operation = _Operation(
            name, kind, instance.name, self.operation_polls if polls is None else polls, done, never
        )
        self.operations[name] = operation
        instance.pending.append(name)
        return operation

    def _operation_get(self, call: Call) -> Reply:
        if call.params["project"] != PROJECT:
            raise legacy_error(403, "notAuthorized",
                               "The client is not authorized to make this request.")  # fmt: skip
        found = self.operations.get(call.params["operation"])
        if found is None:
            raise legacy_error(
                404, "operationDoesNotExist", "The Cloud SQL operation does not exist."
            )
        found.advance()
        return Reply(200, found.view())

    # --- databases and users ---
    def _database_list(self, call: Call) -> Reply:
        found = self._running(call)
        items = [{"kind": "sql#database", "name": d, "instance": found.name, "project": PROJECT,
                  "charset": "UTF8", "collation": "en_US.UTF8",
                  "selfLink": f"{_BASE}/projects/{PROJECT}/instances/{found.name}/databases/{d}"}
                 for d in found.databases]  # fmt: skip
        return Reply(200, {"kind": "sql#databasesList", "items": items})

    def _database_insert(self, call: Call) -> Reply:
        found = self._running(call)
        name = str(call.json().get("name") or "")
        if not name:
            raise legacy_error(400, "required", "Missing database name.")
        if name in found.databases:
            raise legacy_error(409, "alreadyExists", f"Database {name} already exists.")

        def created() -> Errors | None:
            found.databases.append(name)
            return None

        return Reply(200, self._start(found, "CREATE_DATABASE", created).view())

    def _user_list(self, call: Call) -> Reply:
        found = self._running(call)
        items = [{"kind": "sql#user", "name": u, "host": "", "instance": found.name,
                  "project": PROJECT, "type": "BUILT_IN", "etag": "-"}
                 for u in found.users]  # fmt: skip
        return Reply(200, {"kind": "sql#usersList", "items": items})

    def _user_insert(self, call: Call) -> Reply:
        found = self._running(call)
        body = call.json()
        name, password = str(body.get("name") or ""), str(body.get("password") or "")
        if not name:
            raise legacy_error(400, "required", "Missing user name.")
        if name in found.users:
            raise legacy_error(409, "alreadyExists", f"User {name} already exists.")

        def created() -> Errors | None:
            found.users[name] = password
            return None

        return Reply(200, self._start(found, "CREATE_USER", created).view())

    def _user_update(self, call: Call) -> Reply:
        found = self._running(call)
        name = call.query.get("name", "")
        if name not in found.users:
            raise legacy_error(404, "notFound", f"User {name} does not exist.")
        password = str(call.json().get("password") or "")

        def updated() -> Errors | None:
            found.users[name] = password
            return None

        return Reply(200, self._start(found, "UPDATE_USER", updated).view())

    # --- backup runs ---
    def _run(self, instance: _Instance, description: str, stamp: str, kind: str) -> dict[str, Any]:
        ident = str(next(self._run_ids))
        run: dict[str, Any] = {
            "kind": "sql#backupRun", "id": ident, "status": "ENQUEUED", "type": kind,
            "instance": instance.name, "enqueuedTime": stamp, "windowStartTime": stamp,
            "backupKind": "SNAPSHOT", "location": instance.resource["region"],
            "selfLink": f"{_BASE}/projects/{PROJECT}/instances/{instance.name}/backupRuns/{ident}",
        }  # fmt: skip
        if description:
            run["description"] = description
        instance.runs[ident] = run
        instance.contents[ident] = (list(instance.databases), dict(instance.users))
        return run

    def _run_insert(self, call: Call) -> Reply:
        found = self._running(call)
        body = call.json()
        if not found.settings.get("backupConfiguration", {}).get("enabled"):
            raise legacy_error(400, "invalid", "Invalid request: backups are not enabled.")
        run = self._run(found, str(body.get("description") or ""), now(), "ON_DEMAND")
        error = self.backup_error

        def taken() -> Errors | None:
            stamp = now()
            run.update(status="FAILED" if error else "SUCCESSFUL", startTime=stamp, endTime=stamp)
            if error:
                run["error"] = {"kind": "sql#operationError", **error}
            return [error] if error else None

        operation = self._start(found, "BACKUP_VOLUME", taken, polls=self.backup_polls)
        if self.backup_context:
            operation.backup_id = run["id"]
        return Reply(200, operation.view())

    def _run_list(self, call: Call) -> Reply:
        found = self._instance(call)
        runs = sorted(found.runs.values(), key=lambda r: r["enqueuedTime"], reverse=True)
        size = min(int(call.query.get("maxResults") or self.page_size), self.page_size)
        start = int(call.query.get("pageToken") or 0)
        answer: dict[str, Any] = {"kind": "sql#backupRunsList",
                                  "items": runs[start : start + size]}  # fmt: skip
        if start + size < len(runs):
            answer["nextPageToken"] = str(start + size)
        return Reply(200, answer)

    def _run_of(self, call: Call) -> tuple[_Instance, dict[str, Any]]:
        found = self._instance(call)
        run = found.runs.get(call.params["id"])
        if run is None:
            raise legacy_error(404, "notFound", "The backup run does not exist.")
        return found, run

    def _run_get(self, call: Call) -> Reply:
        return Reply(200, self._run_of(call)[1])

    def _run_delete(self, call: Call) -> Reply:
        found, run = self._run_of(call)

        def deleted() -> Errors | None:
            found.runs.pop(run["id"], None)
            return None

        return Reply(200, self._start(found, "DELETE_BACKUP", deleted).view())


def _instance_problems(body: dict[str, Any]) -> list[str]:
    """What Cloud SQL refuses in an instance to create."""
    problems = [f"{key} is output only" for key in _OUTPUT_ONLY if key in body]
    if not _NAME.fullmatch(str(body.get("name", ""))):
        problems.append(f"instance name ({body.get('name')})")
    if not body.get("databaseVersion"):
        problems.append("databaseVersion is required")
    settings = body.get("settings") or {}
    tier, edition = str(settings.get("tier") or ""), settings.get("edition", "ENTERPRISE")
    if not tier:
        problems.append("settings.tier is required")
    elif (edition == "ENTERPRISE_PLUS") != tier.startswith("db-perf-optimized-"):
        problems.append(f"Invalid Tier ({tier}) for ({edition}) Edition")
    labels = settings.get("userLabels") or {}
    for key, value in labels.items():
        if not _LABEL_KEY.fullmatch(key) or not _LABEL_VALUE.fullmatch(str(value)):
            problems.append(f"invalid label {key}={value}")
    ip = settings.get("ipConfiguration") or {}
    if ip.get("ipv4Enabled") is False and not ip.get("privateNetwork"):
        problems.append("an instance needs a public or a private IP")
    return problems


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@cache
def _response_schemas() -> dict[str, str]:
    """Each sqladmin method's response schema, by discovery id."""
    schemas: dict[str, str] = {}

    def walk(resource: dict[str, Any]) -> None:
        for method in resource.get("methods", {}).values():
            schemas[method["id"]] = method.get("response", {}).get("$ref", "Empty")
        for child in resource.get("resources", {}).values():
            walk(child)

    walk(discovery("sqladmin").doc)
    return schemas
