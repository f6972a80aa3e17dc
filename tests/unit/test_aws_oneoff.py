"""One-off Fargate tasks (migrations, release commands): the task's life from recorded ECS
answers (botocore's Stubber: the stand-in does not run containers), its output from CloudWatch
Logs on the AWS stand-in (moto's server on loopback)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import ANY, Stubber

from shipyard.providers.aws import AwsNames
from shipyard.providers.aws._oneoff import POLL, OneOffFailed, OneOffTasks
from shipyard.providers.aws._settings import Network
from shipyard.waiting import wait_until
from tests.aws_standin import (
    InstantClock,
    client,
    moto_server,
    standin_clients,
)

NAMES = AwsNames("shop", "production")
TASK = "arn:aws:ecs:eu-west-1:123456789012:task/shipyard-shop-production/0f1e2d3c4b5a"
DEFINITION = "arn:aws:ecs:eu-west-1:123456789012:task-definition/shipyard-shop-production:7"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        logs = client("logs", url)
        logs.create_log_group(logGroupName=NAMES.log_group)
        yield url


def _log(endpoint: str, *lines: str) -> None:
    logs = client("logs", endpoint)
    stream = f"app/app/{TASK.rsplit('/', 1)[1]}"
    try:
        logs.delete_log_stream(logGroupName=NAMES.log_group, logStreamName=stream)
    except logs.exceptions.ResourceNotFoundException:
        pass
    logs.create_log_stream(logGroupName=NAMES.log_group, logStreamName=stream)
    now = int(time.time() * 1000)
    logs.put_log_events(
        logGroupName=NAMES.log_group, logStreamName=stream,
        logEvents=[{"timestamp": now + i, "message": line} for i, line in enumerate(lines)],
    )  # fmt: skip


def _tasks(endpoint: str) -> tuple[OneOffTasks, Stubber]:
    clients = standin_clients(endpoint)
    stub = Stubber(clients["ecs"])
    network = Network(subnets=["subnet-1"], security_groups=["sg-1"])
    return OneOffTasks(
        NAMES, "shipyard-shop-production", network, clients, clock=InstantClock()
    ), stub


def _run_task(stub: Stubber, answer: dict[str, Any] | None = None) -> None:
    stub.add_response(
        "run_task",
        answer or {"tasks": [{"taskArn": TASK, "lastStatus": "PROVISIONING"}], "failures": []},
        {
            "cluster": "shipyard-shop-production", "taskDefinition": DEFINITION,
            "launchType": "FARGATE", "count": 1, "startedBy": "shipyard-production",
            "networkConfiguration": {"awsvpcConfiguration": {
                "subnets": ["subnet-1"], "securityGroups": ["sg-1"], "assignPublicIp": "DISABLED",
            }},
            "overrides": {"containerOverrides": [
                {"name": "app", "command": ["migrate", "-path", "/migrations", "up"]},
            ]},
            "tags": ANY,
        },
    )  # fmt: skip


def _described(
    stub: Stubber, status: str, container: dict[str, Any] | None = None, **task: Any
) -> None:
    containers = [{"name": "app", **(container or {})}]
    stub.add_response(
        "describe_tasks",
        {"tasks": [{"taskArn": TASK, "lastStatus": status, "containers": containers, **task}]},
        {"cluster": "shipyard-shop-production", "tasks": [TASK]},
    )


COMMAND = ["migrate", "-path", "/migrations", "up"]


def test_a_migration_that_exits_0_passes_with_its_output(endpoint: str) -> None:
    tasks, stub = _tasks(endpoint)
    _run_task(stub)
    _described(stub, "PENDING")
    _described(stub, "RUNNING")
    _described(stub, "STOPPED", {"exitCode": 0})
    _log(endpoint, "4/u add_events_index (12ms)", "5/u add_embeddings (40ms)")
    with stub:
        result = tasks.run(DEFINITION, COMMAND, what="migrations", timeout=600)
        stub.assert_no_pending_responses()
    assert result.ok and result.task == TASK
    assert result.output == "4/u add_events_index (12ms)\n5/u add_embeddings (40ms)"


def test_a_migration_that_exits_1_is_reported_with_its_log(endpoint: str) -> None:
    tasks, stub = _tasks(endpoint)
    _run_task(stub)
    _described(stub, "STOPPED", {"exitCode": 1}, stoppedReason="Essential container in task exited")
    _log(endpoint, 'error: migration 6 failed: column "venue" does not exist')
    with stub:
        result = tasks.run(DEFINITION, COMMAND, what="migrations", timeout=600)
    assert not result.ok and result.exit_code == 1
    assert 'column "venue" does not exist' in result.output


def test_a_task_that_never_ran_its_command_says_why(endpoint: str) -> None:
    tasks, stub = _tasks(endpoint)
    _run_task(stub)
    _described(
        stub, "STOPPED", {"reason": "CannotPullContainerError: pull access denied"},
        stoppedReason="Task failed to start",
    )  # fmt: skip
    with (
        stub,
        pytest.raises(
            OneOffFailed, match="stopped before its command ran: CannotPullContainerError"
        ),
    ):
        tasks.run(DEFINITION, COMMAND, what="migrations", timeout=600)


def test_a_task_ecs_does_not_start_is_refused(endpoint: str) -> None:
    tasks, stub = _tasks(endpoint)
    _run_task(
        stub, {"tasks": [], "failures": [{"reason": "RESOURCE:MEMORY", "detail": "no capacity"}]}
    )
    with (
        stub,
        pytest.raises(
            OneOffFailed, match="ECS did not start the task: RESOURCE:MEMORY no capacity"
        ),
    ):
        tasks.run(DEFINITION, COMMAND, what="migrations", timeout=600)


def test_a_task_that_outlives_its_time_is_stopped(endpoint: str) -> None:
    tasks, stub = _tasks(endpoint)
    _run_task(stub)
    polls = 0

    def poll() -> bool:
        nonlocal polls
        polls += 1
        return False

    wait_until(poll, timeout=60, interval=POLL, clock=InstantClock())  # as many as the run makes
    for _ in range(polls):
        _described(stub, "RUNNING")
    stub.add_response(
        "stop_task", {"task": {"taskArn": TASK}},
        {"cluster": "shipyard-shop-production", "task": TASK, "reason": ANY},
    )  # fmt: skip
    _log(endpoint, "5/u add_embeddings (still running)")
    with stub, pytest.raises(OneOffFailed) as caught:
        tasks.run(DEFINITION, COMMAND, what="migrations", timeout=60)
    assert "still running after 60s; the task was stopped" in caught.value.message
    assert "add_embeddings (still running)" in caught.value.message
