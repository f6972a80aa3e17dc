"""The GCP stand-in's Cloud Run Admin API v2 (``tests.gcp.standin``): services and their
revisions, jobs and their executions, as a deploy observes them.

=================================================  ============================================
Method (discovery id, under ``run.projects.``      What the stand-in does
``locations.``)
=================================================  ============================================
``services.create`` / ``patch`` / ``get`` /       a service's template makes a revision when it
``delete``                                         differs from the latest one (named by
                                                   ``template.revision``; a name in use with
                                                   another template: 409); ``traffic`` is applied
                                                   when the operation ends, and only if every
                                                   revision it names is ready: else the operation
                                                   ends in ``FAILED_PRECONDITION`` and the
                                                   traffic stays as it was (a patch's ``etag``
                                                   that is not the service's: 409 ``ABORTED``)
``services.revisions.get`` / ``list`` / ``delete`` a revision's ``Ready`` condition; deleting one
                                                   that takes traffic or carries a tag: 400
``jobs.create`` / ``patch`` / ``get`` /            a job's template; ``run`` starts an execution
``delete`` / ``run``                               (the operation's metadata), which ends after
                                                   ``polls`` reads with the exit code
                                                   ``execution_outcome`` gives
``jobs.executions.get`` / ``list`` / ``cancel``,   counts, ``completionTime``, the ``Completed``
``jobs.executions.tasks.list``                     condition; a task's ``lastAttemptResult``
=================================================  ============================================

What a revision does once deployed is the test's: ``revision_outcome`` says whether it becomes
ready, fails (with Cloud Run's words for a container that does not listen) or stays pending
forever; ``url_for`` gives the service's and each tag's URL (by default Cloud Run's form,
``https://<tag>---<service>-<hash>-<region>.a.run.app``, which resolves nowhere; an end-to-end test
maps them to local servers).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.gcp.standin import (
    PROJECT,
    REGION,
    ApiError,
    Call,
    GcpStandIn,
    Handler,
    Reply,
    already_exists,
    not_found,
    now,
    rpc_error,
)

_REVISION = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"
_LATEST = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
_NOT_LISTENING = (
    "The user-provided container failed to start and listen on the port defined provided by "
    "the PORT=8080 environment variable within the allocated timeout."
)


@dataclass(frozen=True)
class Outcome:
    """What a new revision does: ``ready``, ``failed`` (with ``message``) or ``pending``."""

    state: str = "ready"
    message: str = ""


@dataclass
class _Service:
    name: str
    body: dict[str, Any]  # what was sent (the template, labels…)
    traffic: list[dict[str, Any]] = field(default_factory=list)
    generation: int = 1
    observed: int = 1
    latest_created: str = ""
    latest_ready: str = ""
    terminal: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=now)


@dataclass
class _Execution:
    name: str
    job: str
    exit_code: int
    polls: int
    created: str = field(default_factory=now)
    cancelled: bool = False


class RunModel:
    """Services, revisions, jobs and executions of the project (see the module)."""

    apis = ("run",)

    def __init__(self, standin: GcpStandIn, *, polls: int = 1) -> None:
        self.standin = standin
        self.polls = polls  # reads of an operation before it ends
        self.execution_polls = polls  # reads of an execution before it ends
        self.services: dict[str, _Service] = {}
        self.revisions: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.executions: dict[str, _Execution] = {}
        self.revision_outcome: Callable[[dict[str, Any]], Outcome] = lambda revision: Outcome()
        self.execution_outcome: Callable[[dict[str, Any], dict[str, Any]], int] = (
            lambda job, overrides: 0
        )
        self.url_for: Callable[[str, str | None], str] = _run_app_url
        self._ids = itertools.count(1)

    def routes(self) -> dict[str, Handler]:
        prefix = "run.projects.locations."
        return {
            f"{prefix}services.create": self._service_create,
            f"{prefix}services.patch": self._service_patch,
            f"{prefix}services.get": self._service_get,
            f"{prefix}services.delete": self._service_delete,
            f"{prefix}services.revisions.get": self._revision_get,
            f"{prefix}services.revisions.list": self._revision_list,
            f"{prefix}services.revisions.delete": self._revision_delete,
            f"{prefix}jobs.create": self._job_create,
            f"{prefix}jobs.patch": self._job_patch,
            f"{prefix}jobs.get": self._job_get,
            f"{prefix}jobs.delete": self._job_delete,
            f"{prefix}jobs.run": self._job_run,
            f"{prefix}jobs.executions.get": self._execution_get,
            f"{prefix}jobs.executions.list": self._execution_list,
            f"{prefix}jobs.executions.cancel": self._execution_cancel,
            f"{prefix}jobs.executions.tasks.list": self._task_list,
        }

    # --- what tests read ---
    def serving(self, service: str) -> dict[str, int]:
        """Revision → percent of the service's traffic, as it is now."""
        found = self.services[self._service_name(service)]
        return {t["revision"]: t.get("percent", 0) for t in found.traffic}

    def tags(self, service: str) -> dict[str, str]:
        found = self.services[self._service_name(service)]
        return {t["tag"]: t["revision"] for t in found.traffic if t.get("tag")}

    @staticmethod
    def _service_name(service: str) -> str:
        if service.startswith("projects/"):
            return service
        return f"projects/{PROJECT}/locations/{REGION}/services/{service}"

    # --- services ---
    def _parent(self, call: Call) -> str:
        return f"projects/{call.params['projectsId']}/locations/{call.params['locationsId']}"

    def _service_create(self, call: Call) -> Reply:
        body = call.json()
        service_id = call.query.get("serviceId", "")
        if not service_id:
            raise ApiError(rpc_error(400, "INVALID_ARGUMENT", "service_id is required"))
        name = f"{self._parent(call)}/services/{service_id}"
        if name in self.services:
            raise already_exists(name)
        if "template" not in body:
            raise ApiError(rpc_error(400, "INVALID_ARGUMENT", "template: Required"))
        service = _Service(name, body)
        self.services[name] = service
        return self._change(service, body, call.params["locationsId"])

    def _service_patch(self, call: Call) -> Reply:
        name = f"{self._parent(call)}/services/{call.params['servicesId']}"
        service = self.services.get(name)
        if service is None:
            raise not_found(name)
        body = call.json()
        if body.get("etag") and body["etag"] != _etag(service):
            raise ApiError(rpc_error(409, "ABORTED", "etag mismatch: the service changed"))
        if "template" not in body:
            raise ApiError(rpc_error(400, "INVALID_ARGUMENT", "template: Required"))
        service.body = body
        service.generation += 1
        return self._change(service, body, call.params["locationsId"])

    def _change(self, service: _Service, body: dict[str, Any], location: str) -> Reply:
        """The revision the template makes (if new) and the traffic, applied when the operation
        ends if every revision it names is ready."""
        created = self._revision_from(service, body["template"])
        traffic = self._wanted_traffic(service, body.get("traffic") or [])

        def result() -> tuple[dict[str, Any] | None, dict[str, Any] | None] | None:
            if created is not None and self._outcome(created).state == "pending":
                return None  # not ready yet (or never): the operation keeps running
            return self._settle(service, created, traffic)

        operation = self.standin.operation("run", location, result, polls=self.polls,
                                           metadata=_any("Service", self._service_view(service)))  # fmt: skip
        return Reply(200, operation)

    def _revision_from(self, service: _Service, template: dict[str, Any]) -> str | None:
        """The new revision of ``template``; ``None`` when it is the latest one's (no change)."""
        latest = self.revisions.get(service.latest_created)
        if latest is not None and latest["_template"] == template:
            return None
        short = service.name.rsplit("/", 1)[-1]
        name = template.get("revision") or f"{short}-{next(self._ids):05d}-abc"
        full = f"{service.name}/revisions/{name}"
        if full in self.revisions:
            if self.revisions[full]["_template"] != template:
                raise ApiError(rpc_error(
                    409, "ALREADY_EXISTS",
                    f"Revision named '{name}' with different configuration already exists.",
                ))  # fmt: skip
            return None
        revision = {
            "name": full, "uid": f"uid-{next(self._ids)}", "service": service.name,
            "generation": "1", "createTime": now(), "updateTime": now(),
            "labels": dict(template.get("labels") or {}),
            "containers": copy.deepcopy(template.get("containers") or []),
            "scaling": copy.deepcopy(template.get("scaling") or {}),
            "serviceAccount": template.get("serviceAccount", ""),
            "volumes": copy.deepcopy(template.get("volumes") or []),
            "_template": copy.deepcopy(template), "_ready": False,
        }  # fmt: skip
        self.revisions[full] = revision
        service.latest_created = full
        return full

    def _wanted_traffic(
        self, service: _Service, targets: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """``targets`` checked, as full revision names; none: all to the latest revision."""
        if not targets:
            return [{"type": _LATEST, "revision": service.latest_created, "percent": 100}]
        wanted, tags = [], set()
        for target in targets:
            kind = target.get("type", _REVISION)
            revision = target.get("revision", "")
            full = (
                service.latest_created
                if kind == _LATEST
                else f"{service.name}/revisions/{revision}"
            )
            if kind == _REVISION and full not in self.revisions:
                raise ApiError(rpc_error(
                    400, "INVALID_ARGUMENT", f"Revision '{revision}' referenced in traffic not found",
                ))  # fmt: skip
            tag = target.get("tag", "")
            if tag in tags:
                raise ApiError(rpc_error(400, "INVALID_ARGUMENT", f"tag '{tag}' used twice"))
            if tag:
                tags.add(tag)
            wanted.append({**target, "type": kind, "revision": full,
                           "percent": int(target.get("percent", 0))})  # fmt: skip
        if sum(t["percent"] for t in wanted) != 100:
            raise ApiError(rpc_error(
                400, "INVALID_ARGUMENT", "The traffic percents must add up to 100",
            ))  # fmt: skip
        return wanted

    def _settle(
        self, service: _Service, created: str | None, traffic: list[dict[str, Any]]
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        if created is not None:
            outcome = self._outcome(created)
            self.revisions[created]["_ready"] = outcome.state == "ready"
            self.revisions[created]["_failure"] = outcome.message or _NOT_LISTENING
            if outcome.state == "ready":
                service.latest_ready = created
        unready = [t["revision"] for t in traffic if not self.revisions[t["revision"]]["_ready"]]
        service.observed = service.generation
        if unready:
            short = unready[0].rsplit("/", 1)[-1]
            message = (
                f"Revision '{short}' is not ready and cannot serve traffic. "
                f"{self.revisions[unready[0]].get('_failure', _NOT_LISTENING)}"
            )
            service.terminal = {"type": "Ready", "state": "CONDITION_FAILED",
                                "reason": "REVISION_FAILED", "message": message}  # fmt: skip
            return None, {"code": 9, "message": message}
        service.traffic = traffic
        service.terminal = {"type": "Ready", "state": "CONDITION_SUCCEEDED"}
        return _any("Service", self._service_view(service)), None

    def _outcome(self, revision: str) -> Outcome:
        """What ``revision`` does, as ``revision_outcome`` says now (asked until it is settled:
        a data plane may say "pending" while its container starts)."""
        found = self.revisions[revision]
        settled = found.get("_outcome")
        if settled is None or settled.state == "pending":
            settled = self.revision_outcome(found)
            found["_outcome"] = settled
        return settled

    def _service_view(self, service: _Service) -> dict[str, Any]:
        short = service.name.rsplit("/", 1)[-1]
        statuses = [
            {"type": t["type"], "revision": t["revision"].rsplit("/", 1)[-1],
             "percent": t["percent"], **({"tag": t["tag"], "uri": self.url_for(short, t["tag"])}
                                         if t.get("tag") else {})}
            for t in service.traffic
        ]  # fmt: skip
        sent = {k: v for k, v in service.body.items() if k != "etag"}
        view = {
            **sent, "name": service.name, "uid": f"uid-{short}",
            "generation": str(service.generation), "observedGeneration": str(service.observed),
            "reconciling": service.observed != service.generation,
            "latestCreatedRevision": service.latest_created,
            "latestReadyRevision": service.latest_ready,
            "traffic": [{**t, "revision": t["revision"].rsplit("/", 1)[-1]} for t in service.traffic],
            "trafficStatuses": statuses, "uri": self.url_for(short, None),
            "terminalCondition": service.terminal, "etag": _etag(service),
            "createTime": service.created, "updateTime": now(),
        }  # fmt: skip
        return view

    def _service_get(self, call: Call) -> Reply:
        name = f"{self._parent(call)}/services/{call.params['servicesId']}"
        service = self.services.get(name)
        if service is None:
            raise not_found(name)
        return Reply(200, self._service_view(service))

    def _service_delete(self, call: Call) -> Reply:
        name = f"{self._parent(call)}/services/{call.params['servicesId']}"
        service = self.services.pop(name, None)
        if service is None:
            raise not_found(name)
        for revision in [r for r in self.revisions if r.startswith(f"{name}/")]:
            del self.revisions[revision]
        view = _any("Service", self._service_view(service))
        operation = self.standin.operation(
            "run", call.params["locationsId"], lambda: (view, None), polls=self.polls
        )
        return Reply(200, operation)

    # --- revisions ---
    def _revision_view(self, revision: dict[str, Any]) -> dict[str, Any]:
        ready = revision["_ready"]
        outcome: Outcome = revision.get("_outcome") or Outcome("pending")
        if ready:
            condition = {"type": "Ready", "state": "CONDITION_SUCCEEDED"}
        elif outcome.state == "failed" and "_failure" in revision:
            condition = {"type": "Ready", "state": "CONDITION_FAILED",
                         "revisionReason": "HEALTH_CHECK_CONTAINER_ERROR",
                         "message": revision["_failure"]}  # fmt: skip
        else:
            condition = {"type": "Ready", "state": "CONDITION_RECONCILING"}
        shown = {k: v for k, v in revision.items() if not k.startswith("_")}
        return {**shown, "conditions": [condition], "reconciling": condition["state"] ==
                "CONDITION_RECONCILING", "observedGeneration": "1"}  # fmt: skip

    def _revision_get(self, call: Call) -> Reply:
        name = (
            f"{self._parent(call)}/services/{call.params['servicesId']}"
            f"/revisions/{call.params['revisionsId']}"
        )
        revision = self.revisions.get(name)
        if revision is None:
            raise not_found(name)
        return Reply(200, self._revision_view(revision))

    def _revision_list(self, call: Call) -> Reply:
        service = f"{self._parent(call)}/services/{call.params['servicesId']}"
        found = [
            self._revision_view(r) for n, r in self.revisions.items() if n.startswith(f"{service}/")
        ]
        return Reply(200, {"revisions": found} if found else {})

    def _revision_delete(self, call: Call) -> Reply:
        service_name = f"{self._parent(call)}/services/{call.params['servicesId']}"
        name = f"{service_name}/revisions/{call.params['revisionsId']}"
        revision = self.revisions.get(name)
        if revision is None:
            raise not_found(name)
        service = self.services.get(service_name)
        if service is not None and any(t["revision"] == name for t in service.traffic):
            raise ApiError(rpc_error(
                400, "FAILED_PRECONDITION",
                f"Revision {call.params['revisionsId']} is referenced in traffic and cannot be deleted",
            ))  # fmt: skip
        del self.revisions[name]
        view = self._revision_view(revision)
        operation = self.standin.operation(
            "run", call.params["locationsId"], lambda: (_any("Revision", view), None), polls=0
        )
        return Reply(200, operation)

    # --- jobs ---
    def _job_create(self, call: Call) -> Reply:
        job_id = call.query.get("jobId", "")
        name = f"{self._parent(call)}/jobs/{job_id}"
        if not job_id:
            raise ApiError(rpc_error(400, "INVALID_ARGUMENT", "job_id is required"))
        if name in self.jobs:
            raise already_exists(name)
        return self._job_store(name, call)

    def _job_patch(self, call: Call) -> Reply:
        name = f"{self._parent(call)}/jobs/{call.params['jobsId']}"
        if name not in self.jobs and call.query.get("allowMissing") != "true":
            raise not_found(name)
        return self._job_store(name, call)

    def _job_store(self, name: str, call: Call) -> Reply:
        body = call.json()
        if "template" not in body:
            raise ApiError(rpc_error(400, "INVALID_ARGUMENT", "template: Required"))
        previous = self.jobs.get(name, {})
        job = {**body, "name": name, "uid": f"uid-{next(self._ids)}", "createTime":
               previous.get("createTime", now()), "updateTime": now(),
               "generation": str(int(previous.get("generation", "0")) + 1),
               "executionCount": previous.get("executionCount", 0)}  # fmt: skip
        job.pop("etag", None)
        self.jobs[name] = job
        view = _any("Job", job)
        operation = self.standin.operation(
            "run", call.params["locationsId"], lambda: (view, None), polls=self.polls
        )
        return Reply(200, operation)

    def _job_get(self, call: Call) -> Reply:
        name = f"{self._parent(call)}/jobs/{call.params['jobsId']}"
        job = self.jobs.get(name)
        if job is None:
            raise not_found(name)
        return Reply(200, job)

    def _job_delete(self, call: Call) -> Reply:
        name = f"{self._parent(call)}/jobs/{call.params['jobsId']}"
        job = self.jobs.pop(name, None)
        if job is None:
            raise not_found(name)
        operation = self.standin.operation(
            "run", call.params["locationsId"], lambda: (_any("Job", job), None), polls=0
        )
        return Reply(200, operation)

    def _job_run(self, call: Call) -> Reply:
        name = f"{self._parent(call)}/jobs/{call.params['jobsId']}"
        job = self.jobs.get(name)
        if job is None:
            raise not_found(name)
        overrides = call.json().get("overrides") or {}
        short = name.rsplit("/", 1)[-1]
        execution = _Execution(
            f"{name}/executions/{short}-{next(self._ids):04d}x", name,
            self.execution_outcome(job, overrides), self.execution_polls,
        )  # fmt: skip
        self.executions[execution.name] = execution
        job["executionCount"] = int(job.get("executionCount", 0)) + 1
        job["latestCreatedExecution"] = {"name": execution.name, "createTime": execution.created}
        view = self._execution_view(execution, advance=False)

        def result() -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
            return _any("Execution", self._execution_view(execution, advance=False)), None

        operation = self.standin.operation(
            "run", call.params["locationsId"], result, polls=10**9,
            metadata=_any("Execution", view),
        )  # fmt: skip
        return Reply(200, operation)

    def _execution_view(self, execution: _Execution, *, advance: bool) -> dict[str, Any]:
        if advance and execution.polls > 0:
            execution.polls -= 1
        done = execution.polls <= 0 or execution.cancelled
        succeeded = done and not execution.cancelled and execution.exit_code == 0
        failed = done and not execution.cancelled and execution.exit_code != 0
        view: dict[str, Any] = {
            "name": execution.name, "uid": f"uid-{execution.name.rsplit('/', 1)[-1]}",
            "job": execution.job.rsplit("/", 1)[-1], "createTime": execution.created,
            "startTime": execution.created, "taskCount": 1, "parallelism": 1,
            "runningCount": 0 if done else 1, "succeededCount": int(succeeded),
            "failedCount": int(failed), "cancelledCount": int(execution.cancelled),
            "retriedCount": 0, "reconciling": not done, "generation": "1",
            "logUri": f"https://console.cloud.google.com/logs/viewer?execution={execution.name}",
        }  # fmt: skip
        if done:
            view["completionTime"] = now()
            state = "CONDITION_SUCCEEDED" if succeeded else "CONDITION_FAILED"
            condition = {"type": "Completed", "state": state}
            if failed:
                condition |= {"executionReason": "NON_ZERO_EXIT_CODE",
                              "message": "Task failed with exit code "
                              f"{execution.exit_code}"}  # fmt: skip
            if execution.cancelled:
                condition |= {"executionReason": "CANCELLED", "message": "Cancelled"}
            view["conditions"] = [condition]
        else:
            view["conditions"] = [{"type": "Completed", "state": "CONDITION_RECONCILING"}]
        return view

    def _execution(self, call: Call) -> _Execution:
        name = (
            f"{self._parent(call)}/jobs/{call.params['jobsId']}"
            f"/executions/{call.params['executionsId']}"
        )
        execution = self.executions.get(name)
        if execution is None:
            raise not_found(name)
        return execution

    def _execution_get(self, call: Call) -> Reply:
        return Reply(200, self._execution_view(self._execution(call), advance=True))

    def _execution_list(self, call: Call) -> Reply:
        job = f"{self._parent(call)}/jobs/{call.params['jobsId']}"
        found = [
            self._execution_view(e, advance=False) for e in self.executions.values() if e.job == job
        ]
        return Reply(200, {"executions": found} if found else {})

    def _execution_cancel(self, call: Call) -> Reply:
        execution = self._execution(call)
        execution.cancelled = True
        view = self._execution_view(execution, advance=False)
        operation = self.standin.operation(
            "run", call.params["locationsId"], lambda: (_any("Execution", view), None), polls=0
        )
        return Reply(200, operation)

    def _task_list(self, call: Call) -> Reply:
        execution = self._execution(call)
        view = self._execution_view(execution, advance=False)
        task: dict[str, Any] = {
            "name": f"{execution.name}/tasks/{execution.name.rsplit('/', 1)[-1]}-task0",
            "index": 0, "job": view["job"], "execution": execution.name.rsplit("/", 1)[-1],
            "retried": 0, "createTime": execution.created,
        }  # fmt: skip
        if "completionTime" in view and not execution.cancelled:
            task["lastAttemptResult"] = {"exitCode": execution.exit_code,
                                         "status": {"code": 0 if execution.exit_code == 0 else 2}}  # fmt: skip
        return Reply(200, {"tasks": [task]})


def _any(kind: str, value: dict[str, Any]) -> dict[str, Any]:
    """``value`` as a JSON ``Any`` of ``google.cloud.run.v2.<kind>``."""
    return {"@type": f"type.googleapis.com/google.cloud.run.v2.{kind}", **value}


def _etag(service: _Service) -> str:
    return f'"{service.generation}-{service.name}"'


def _run_app_url(service: str, tag: str | None) -> str:
    host = f"{service}-7kq3xa2bqa-ew.a.run.app"
    return f"https://{tag}---{host}" if tag else f"https://{host}"


def with_run(standin: GcpStandIn, *, polls: int = 1) -> RunModel:
    """``standin`` serving Cloud Run too; the model."""
    model: RunModel = standin.add(RunModel(standin, polls=polls))
    return model
