"""One-off Fargate tasks: migrations and release commands run as a task of the release's own task
definition with another command, and their result decides.

A task is started (``RunTask``, the environment's subnets and security groups), waited for until
ECS reports it stopped, then judged by the app container's exit code; a task that never ran its
command (the image could not be pulled, a secret could not be read, no capacity) is told apart
by ECS's stop reason. The command's output is read back from CloudWatch Logs, the task's own
stream (``app/app/<task id>``). A task still running at the deadline is stopped, and its output
so far is part of the error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shipyard.errors import ShipyardError
from shipyard.providers.aws._infrastructure import Clients
from shipyard.providers.aws._settings import AwsNames, Network
from shipyard.providers.aws._tasks import CONTAINER
from shipyard.waiting import Clock, Interval, wait_until

_LOG_LINES = 50
POLL = Interval(1.0, 1.5, 10.0)  # between DescribeTasks: soon at first, then at most every 10 s


@dataclass(frozen=True)
class OneOffResult:
    """How a one-off task ended: the command's exit code and its output's last lines."""

    task: str  # its ARN
    exit_code: int
    output: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class OneOffFailed(ShipyardError):
    """A one-off task did not run its command to the end (not an exit code of the command)."""


class OneOffTasks:
    """Runs commands as one-off tasks in the environment's cluster."""

    def __init__(
        self,
        names: AwsNames,
        cluster: str,
        network: Network,
        clients: Clients,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.names = names
        self.cluster = cluster
        self.network = network
        self.clients = clients
        self.clock = clock or Clock()

    def _call(self, api: str, action: str, what: str, /, **params: Any) -> Any:
        return self.clients.call(api, action, what, **params)

    def run(
        self, task_definition: str, command: Sequence[str], *, what: str, timeout: float
    ) -> OneOffResult:
        """Run ``command`` (``what`` names it in messages) in a task of ``task_definition``;
        its result, whatever its exit code. ``OneOffFailed`` when the command did not run to
        its end: ECS could not start it, it ended without an exit code, or it outlived
        ``timeout`` seconds (it is then stopped)."""
        started = self._call(
            "ecs", "RunTask", what,
            cluster=self.cluster, taskDefinition=task_definition, launchType="FARGATE",
            count=1, startedBy=f"shipyard-{self.names.environment}"[:36],
            networkConfiguration={"awsvpcConfiguration": {
                "subnets": list(self.network.subnets),
                "securityGroups": list(self.network.security_groups),
                "assignPublicIp": "ENABLED" if self.network.public_ip else "DISABLED",
            }},
            overrides={"containerOverrides": [{"name": CONTAINER, "command": list(command)}]},
            tags=[{"key": k, "value": v} for k, v in self.names.tags({}).items()],
        )  # fmt: skip
        if started.get("failures"):
            reasons = "; ".join(
                f"{f.get('reason', '?')} {f.get('detail', '')}".strip() for f in started["failures"]
            )
            raise OneOffFailed(
                f"{what}: ECS did not start the task: {reasons}",
                hint="check the cluster's capacity and the subnets; nothing ran",
            )
        task = started["tasks"][0]["taskArn"]

        def described() -> dict[str, Any]:
            found = self._call("ecs", "DescribeTasks", what,
                               cluster=self.cluster, tasks=[task])  # fmt: skip
            tasks: list[dict[str, Any]] = found.get("tasks") or [{}]
            return tasks[0]

        ended = wait_until(
            described,
            timeout=timeout,
            interval=POLL,
            clock=self.clock,
            done=lambda t: t.get("lastStatus") == "STOPPED",
        )
        if ended is None:
            self._call("ecs", "StopTask", what, cluster=self.cluster, task=task,
                       reason=f"shipyard: {what} outlived {timeout:g}s")  # fmt: skip
            raise OneOffFailed(
                f"{what}: still running after {timeout:g}s; the task was stopped\n"
                f"{_indent(self.output(task))}",
                hint="make it faster, or give it more time",
            )
        container: dict[str, Any] = next(
            (c for c in ended.get("containers", []) if c.get("name") == CONTAINER), {}
        )
        code = container.get("exitCode")
        if code is None:
            reason = container.get("reason") or ended.get("stoppedReason") or "no reason given"
            raise OneOffFailed(
                f"{what}: the task stopped before its command ran: {reason}",
                hint="the image, its secrets and the execution role must be reachable from the "
                "task's subnets",
            )
        return OneOffResult(task, int(code), self.output(task))

    def output(self, task: str) -> str:
        """The last lines the task's app container logged (empty when there are none yet)."""
        stream = f"app/{CONTAINER}/{task.rsplit('/', 1)[-1]}"
        found = self.clients.find(
            "logs", "GetLogEvents", stream, missing="ResourceNotFoundException",
            logGroupName=self.names.log_group, logStreamName=stream, limit=_LOG_LINES,
            startFromHead=False,
        )  # fmt: skip
        if found is None:
            return ""
        return "\n".join(event["message"].rstrip("\n") for event in found.get("events", []))


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in (text or "(no output)").splitlines())
