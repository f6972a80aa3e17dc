"""Cloud Run: the environment's service, whose revisions are its releases, and its jobs, whose
executions run migrations and release commands.

Blue-green on revisions: a slot (blue, green) is a traffic tag. Starting a release in a slot
deploys its revision with no traffic, under the slot's tag (the tag moves to it), in one change of
the service that keeps every other target's percent and tag; the change's operation ends when
the revision is ready, or in an error when it cannot become ready (the traffic then stays where it
was). The tagged URL reaches the revision alone, for the health gate and ``/version`` before any
request is moved. The switch moves all traffic to the slot's revision and keeps the others
tagged at 0%, so a switch back (a rollback) is one more change, with nothing rebuilt. Traffic is
always sent whole and explicit: a service with none sends every request to its latest revision.

Every change is sent with the service's ``etag``: another change made meanwhile refuses it (409)
instead of being overwritten. The first deploy creates the service with its revision taking all
traffic (there is nothing to protect yet).

A job runs one container to completion: it is created (or its template replaced) with no retries,
then run; its execution is followed to its end, and its task's exit code decides. An execution
that outlives its time is cancelled.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shipyard.errors import DeployFailed, ShipyardError
from shipyard.gcp import OPERATION_POLL, GcpApi, OperationFailed, wait_operation
from shipyard.providers.gcp._names import GcpNames
from shipyard.waiting import Interval, wait_until

_REVISION = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"
_NOT_FOUND = 404
_CLOUDSQL_VOLUME = "cloudsql"


@dataclass(frozen=True)
class Container:
    """What runs: a release's server, or a job's command."""

    image: str
    env: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)  # name → secret version resource
    port: int | None = None
    command: Sequence[str] = ()
    args: Sequence[str] = ()
    cloud_sql: str | None = None  # an instance's connection name, mounted at /cloudsql
    health_path: str | None = None  # the startup probe's path
    cpu: str = "1"
    memory: str = "512Mi"
    startup_seconds: float = 60.0  # how long the startup probe may fail before Cloud Run gives up
    network: str | None = None  # a VPC network reached through Direct VPC egress (private IP)

    def body(self) -> dict[str, Any]:
        """The container as Cloud Run takes it (``GoogleCloudRunV2Container``)."""
        env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(self.env.items())]
        for name, version in sorted(self.secrets.items()):
            secret, number = _secret_version(version)
            env.append({"name": name, "valueSource": {"secretKeyRef": {"secret": secret,
                                                                        "version": number}}})  # fmt: skip
        container: dict[str, Any] = {
            "image": self.image,
            "env": env,
            "resources": {"limits": {"cpu": self.cpu, "memory": self.memory}},
        }
        if self.command:
            container["command"] = list(self.command)
        if self.args:
            container["args"] = list(self.args)
        if self.port is not None:
            container["ports"] = [{"containerPort": self.port, "name": "http1"}]
        if self.health_path is not None and self.port is not None:
            container["startupProbe"] = {
                "httpGet": {"path": self.health_path, "port": self.port},
                "periodSeconds": 2, "timeoutSeconds": 2,
                "failureThreshold": max(1, min(120, math.ceil(self.startup_seconds / 2))),
            }  # fmt: skip
        if self.cloud_sql is not None:
            container["volumeMounts"] = [{"name": _CLOUDSQL_VOLUME, "mountPath": "/cloudsql"}]
        return container

    def volumes(self) -> list[dict[str, Any]]:
        if self.cloud_sql is None:
            return []
        return [{"name": _CLOUDSQL_VOLUME, "cloudSqlInstance": {"instances": [self.cloud_sql]}}]

    def placed(self, template: dict[str, Any]) -> dict[str, Any]:
        """``template`` (a revision's or a task's) with the container's volumes and network."""
        volumes = self.volumes()
        if volumes:
            template["volumes"] = volumes
        if self.network is not None:
            template["vpcAccess"] = {"networkInterfaces": [{"network": self.network}],
                                     "egress": "PRIVATE_RANGES_ONLY"}  # fmt: skip
        return template


@dataclass(frozen=True)
class Revision:
    """A release's revision: its name (``GcpNames.revision``), container and labels."""

    name: str
    container: Container
    labels: Mapping[str, str] = field(default_factory=dict)
    service_account: str | None = None
    min_instances: int = 0
    max_instances: int = 10

    def template(self) -> dict[str, Any]:
        template: dict[str, Any] = {
            "revision": self.name,
            "labels": dict(self.labels),
            "containers": [self.container.body()],
            "scaling": {"minInstanceCount": self.min_instances,
                        "maxInstanceCount": self.max_instances},
        }  # fmt: skip
        if self.service_account:
            template["serviceAccount"] = self.service_account
        return self.container.placed(template)


@dataclass(frozen=True)
class Target:
    """One entry of the service's traffic: a revision, its percent and tag (``""``: none)."""

    revision: str
    percent: int
    tag: str = ""
    uri: str = ""

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": _REVISION, "revision": self.revision,
                                "percent": self.percent}  # fmt: skip
        if self.tag:
            body["tag"] = self.tag
        return body


class CloudRunService:
    """The environment's Cloud Run service (see the module), open to anyone (no IAM check on
    its URLs, as a public web app needs). ``timeout``: how long a change (a revision becoming
    ready) may take."""

    def __init__(
        self,
        api: GcpApi,
        names: GcpNames,
        *,
        labels: Mapping[str, str] | None = None,
        timeout: float = 600.0,
        interval: Interval = OPERATION_POLL,
    ) -> None:
        self.api = api
        self.names = names
        self.labels = names.labels(dict(labels or {}))
        self.timeout = timeout
        self.interval = interval

    @property
    def path(self) -> str:
        return f"v2/{self.names.parent}/services/{self.names.service}"

    # -- reading ---------------------------------------------------------------------------------
    def get(self) -> dict[str, Any] | None:
        return self.api.json("GET", self.path, allow=(_NOT_FOUND,), what=self.names.service)

    def traffic(self, service: Mapping[str, Any] | None = None) -> list[Target]:
        """The traffic as it is now (``trafficStatuses``), with each tag's URL."""
        found = service if service is not None else self.get()
        if found is None:
            return []
        return [
            Target(str(t.get("revision", "")), int(t.get("percent", 0)), str(t.get("tag", "")),
                   str(t.get("uri", "")))
            for t in found.get("trafficStatuses") or []
        ]  # fmt: skip

    def tagged(self, slot: str) -> Target | None:
        """The target ``slot`` tags, or ``None``."""
        return next((t for t in self.traffic() if t.tag == slot), None)

    def live(self) -> Target | None:
        """The revision that takes every request, or ``None`` (no service, or split traffic)."""
        return next((t for t in self.traffic() if t.percent == 100), None)  # noqa: PLR2004

    def url(self) -> str | None:
        found = self.get()
        return str(found["uri"]) if found and found.get("uri") else None

    def revision(self, name: str) -> dict[str, Any] | None:
        return self.api.json("GET", f"{self.path}/revisions/{name}", allow=(_NOT_FOUND,), what=name)

    # -- changing ------------------------------------------------------------------------------
    def start(self, slot: str, revision: Revision | str, *, take_all: bool = False) -> Target:
        """Deploy ``revision`` under tag ``slot`` with no traffic, and wait until it is ready;
        its target, with the tagged URL. ``DeployFailed`` with Cloud Run's reason when it cannot
        become ready; the traffic is then unchanged. A revision's name (a release kept for a
        rollback) is tagged as it is: no template is sent for it. ``take_all`` (nothing served
        before: a new service, or one a failed first deploy left): the revision takes every
        request, and the service's other targets are dropped."""
        service = self.get()
        name = revision if isinstance(revision, str) else revision.name
        if isinstance(revision, str):
            if service is None or self.revision(revision) is None:
                raise DeployFailed("start", f"revision {revision} is gone", hint="deploy again")
            template = service["template"]  # unchanged: no revision is made
        else:
            template = revision.template()
        if service is None:
            self._change("POST", f"v2/{self.names.parent}/services", template,
                         [Target(name, 100, slot)], query={"serviceId": self.names.service},
                         what=name)  # fmt: skip
        else:
            current = self.traffic(service)
            if take_all:
                targets = [Target(name, 100, slot)]
            elif any(t.tag == slot and t.percent for t in current):
                raise DeployFailed("start", f"slot {slot} is the live slot; refusing to replace it")
            else:
                kept = [t for t in current if t.tag != slot and (t.percent or t.tag)]
                targets = [*kept, Target(name, 0, slot)]
            self._change("PATCH", self.path, template, targets, etag=service.get("etag"),
                         what=name)  # fmt: skip
        started = self.tagged(slot)
        if started is None or started.revision != name:
            raise DeployFailed("start", f"Cloud Run did not tag {name} as {slot}")
        return started

    def withdraw(self, slot: str, name: str, template: Mapping[str, Any] | None) -> str:
        """Take back a candidate ``name`` started under ``slot`` that takes no traffic: the
        service's template set back to ``template`` (an earlier revision's: no revision is
        made), the tag dropped, then the revision deleted; what was done."""
        service = self.get()
        if service is None:
            return "no service"
        current = self.traffic(service)
        if any(t.revision == name and t.percent for t in current):
            return f"{name} takes traffic: kept"
        targets = [t for t in current if t.revision != name and (t.percent or t.tag)]
        if template is not None and sum(t.percent for t in targets) == 100:  # noqa: PLR2004
            self._change("PATCH", self.path, template, targets, etag=service.get("etag"),
                         what=f"withdraw {name}")  # fmt: skip
        return f"{name} withdrawn" if self.delete_revision(name) else f"{name} untagged"

    def switch(self, slot: str) -> Target:
        """Every request to the revision ``slot`` tags; the others keep their tags at 0%."""
        service = self._existing()
        current = self.traffic(service)
        chosen = next((t for t in current if t.tag == slot), None)
        if chosen is None:
            raise ShipyardError(
                f"Cloud Run service {self.names.service}: no revision is tagged {slot}",
                hint="deploy again",
            )
        targets = [Target(t.revision, 100 if t.tag == slot else 0, t.tag) for t in current if t.tag]
        self._change("PATCH", self.path, service["template"], targets,
                     etag=service.get("etag"), what=f"traffic to {chosen.revision}")  # fmt: skip
        return Target(chosen.revision, 100, slot, chosen.uri)

    def untag(self, slot: str) -> str:
        """Drop tag ``slot`` from its revision, when it takes no traffic."""
        service = self.get()
        if service is None:
            return "no service"
        current = self.traffic(service)
        tagged = next((t for t in current if t.tag == slot), None)
        if tagged is None:
            return f"no revision tagged {slot}"
        if tagged.percent:
            raise ShipyardError(f"refusing to untag {tagged.revision}: it takes traffic")
        targets = [t for t in current if t.tag != slot and (t.percent or t.tag)]
        self._change("PATCH", self.path, service["template"], targets,
                     etag=service.get("etag"), what=f"untag {tagged.revision}")  # fmt: skip
        return f"{tagged.revision} untagged"

    def delete_revision(self, name: str) -> bool:
        """Delete a revision that takes no traffic and carries no tag (a pruned release);
        whether it was. The revision the service's template names is kept: every change that
        moves only traffic sends that template again, and Cloud Run would make it anew."""
        service = self.get()
        if service is not None and (service.get("template") or {}).get("revision") == name:
            return False
        operation = self.api.json(
            "DELETE", f"{self.path}/revisions/{name}", allow=(_NOT_FOUND,), what=name
        )
        if operation is None:
            return False
        wait_operation(self.api, operation, timeout=self.timeout, what=f"deleting {name}",
                       interval=self.interval)  # fmt: skip
        return True

    def delete(self) -> bool:
        """Delete the service and its revisions; whether it existed."""
        operation = self.api.json("DELETE", self.path, allow=(_NOT_FOUND,), what=self.names.service)
        if operation is None:
            return False
        wait_operation(self.api, operation, timeout=self.timeout,
                       what=f"deleting {self.names.service}", interval=self.interval)  # fmt: skip
        return True

    def _existing(self) -> dict[str, Any]:
        service = self.get()
        if service is None:
            raise ShipyardError(
                f"Cloud Run service {self.names.service} does not exist",
                hint="the first deploy creates it",
            )
        return service

    def _change(
        self,
        method: str,
        path: str,
        template: Mapping[str, Any],
        targets: Sequence[Target],
        *,
        what: str,
        etag: Any = None,
        query: Mapping[str, str] | None = None,
    ) -> None:
        body: dict[str, Any] = {
            "labels": self.labels,
            "ingress": "INGRESS_TRAFFIC_ALL",
            "invokerIamDisabled": True,
            "template": dict(template),
            "traffic": [t.body() for t in targets],
        }
        if etag:
            body["etag"] = str(etag)
        operation = self.api.json(method, path, body=body, query=query, idempotent=True,
                                  what=self.names.service) or {}  # fmt: skip
        try:
            wait_operation(self.api, operation, timeout=self.timeout, what=what,
                           interval=self.interval)  # fmt: skip
        except OperationFailed as exc:
            raise DeployFailed(
                "start", f"Cloud Run service {self.names.service}: {exc.message}",
                hint="the traffic stays where it was; see the revision's logs "
                "(`shipyard logs ENV --app`)",
            ) from exc  # fmt: skip


@dataclass(frozen=True)
class Execution:
    """How a job's execution ended."""

    name: str
    succeeded: bool
    exit_code: int | None
    message: str
    log_uri: str


class CloudRunJobs:
    """The environment's jobs (see the module): ``run`` makes the job ``purpose`` run
    ``container`` once and says how it ended."""

    def __init__(
        self,
        api: GcpApi,
        names: GcpNames,
        *,
        labels: Mapping[str, str] | None = None,
        service_account: str | None = None,
        interval: Interval = OPERATION_POLL,
    ) -> None:
        self.api = api
        self.names = names
        self.labels = names.labels(dict(labels or {}))
        self.service_account = service_account
        self.interval = interval

    def _path(self, purpose: str) -> str:
        return f"v2/{self.names.parent}/jobs/{self.names.job(purpose)}"

    def run(self, purpose: str, container: Container, *, timeout: float) -> Execution:
        """Run ``container`` as job ``purpose``; its execution's end, or ``DeployFailed``
        when it did not end within ``timeout`` seconds (then it is cancelled)."""
        job = self.names.job(purpose)
        task: dict[str, Any] = {
            "containers": [container.body()],
            "maxRetries": 0,
            "timeout": f"{max(1, round(timeout))}s",
        }
        container.placed(task)
        if self.service_account:
            task["serviceAccount"] = self.service_account
        body = {"labels": self.labels,
                "template": {"taskCount": 1, "parallelism": 1, "template": task}}  # fmt: skip
        operation = self.api.json(
            "PATCH", self._path(purpose), body=body, query={"allowMissing": True}, what=job
        ) or {}  # fmt: skip
        wait_operation(self.api, operation, timeout=120.0, what=f"job {job}",
                       interval=self.interval)  # fmt: skip
        started = self.api.json(
            "POST", f"{self._path(purpose)}:run", body={}, idempotent=False, what=job
        ) or {}  # fmt: skip
        name = str((started.get("metadata") or {}).get("name", ""))
        if not name:
            raise ShipyardError(f"Cloud Run job {job}: its run named no execution")
        return self._follow(job, name, timeout)

    def _follow(self, job: str, name: str, timeout: float) -> Execution:
        short = name.rsplit("/", 1)[-1]
        path = f"v2/{name}"

        def ended() -> dict[str, Any] | None:
            found = self.api.json("GET", path, what=short) or {}
            return found if found.get("completionTime") else None

        done = wait_until(ended, timeout=timeout, interval=self.interval, clock=self.api.clock)
        if done is None:
            self.api.json("POST", f"{path}:cancel", body={}, what=short)
            raise DeployFailed(
                "migrate", f"Cloud Run job {job}: execution {short} did not end within "
                f"{timeout:.0f}s; it was cancelled",
                hint="see its logs (`shipyard logs ENV --app`), then deploy again",
            )  # fmt: skip
        succeeded = int(done.get("succeededCount") or 0) >= int(done.get("taskCount") or 1)
        conditions = done.get("conditions") or [{}]
        message = str(next((c.get("message", "") for c in conditions if c.get("message")), ""))
        return Execution(
            name, succeeded, None if succeeded else self._exit_code(path), message,
            str(done.get("logUri", "")),
        )  # fmt: skip

    def _exit_code(self, path: str) -> int | None:
        """The exit code of the execution's (one) task, when it has one."""
        tasks = (self.api.json("GET", f"{path}/tasks") or {}).get("tasks") or [{}]
        result = tasks[0].get("lastAttemptResult") or {}
        return int(result["exitCode"]) if "exitCode" in result else None

    def delete(self, purpose: str) -> bool:
        operation = self.api.json("DELETE", self._path(purpose), allow=(_NOT_FOUND,),
                                  what=self.names.job(purpose))  # fmt: skip
        if operation is None:
            return False
        wait_operation(self.api, operation, timeout=120.0,
                       what=f"deleting {self.names.job(purpose)}", interval=self.interval)  # fmt: skip
        return True


def _secret_version(resource: str) -> tuple[str, str]:
    """``projects/p/secrets/s/versions/n`` → (``projects/p/secrets/s``, ``n``)."""
    matched = re.fullmatch(r"(projects/[^/]+/secrets/[^/]+)/versions/([^/]+)", resource)
    if matched is None:
        raise ValueError(f"not a secret version: {resource!r}")
    return matched.group(1), matched.group(2)
