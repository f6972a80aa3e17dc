"""The app's task definitions on the AWS stand-in (moto's server on loopback): one revision per
release, secrets only by reference, the diff ``plan`` shows; and the Fargate sizes the settings
accept."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from shipyard.providers.aws import (
    AwsInfrastructure,
    AwsNames,
    AwsSettings,
    TaskDefinitions,
    TaskSpec,
)
from shipyard.providers.aws._network import AwsNetwork
from tests.aws_standin import REGION, client, moto_server, standin_clients, two_subnets

SECRETS = {"DATABASE_URL": "postgres://app:pw-never-shown@db/app", "API_KEY": "key-never-shown"}


SUBNETS: list[str] = []


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        SUBNETS[:] = two_subnets(url)
        yield url


def _world(endpoint: str, **settings: object) -> tuple[AwsInfrastructure, TaskDefinitions]:
    clients = standin_clients(endpoint, subnets=SUBNETS, **settings)
    names = AwsNames("shop", "production")
    network = AwsNetwork(names, clients.settings, clients, port=8080, database=False)
    infrastructure = AwsInfrastructure(names, clients.settings, SECRETS, clients, network)
    return infrastructure, TaskDefinitions(names, clients.settings, clients)


def _spec(infrastructure: AwsInfrastructure, image: str, release: str) -> TaskSpec:
    return TaskSpec(
        image=image, port=8080, version="1.2.0", commit="abc1234", release_id=release,
        execution_role_arn=infrastructure.execution_role_arn(),
        env={"LOG_LEVEL": "info"}, secret_arns=infrastructure.secret_arns(),
    )  # fmt: skip


def test_each_release_is_a_revision_with_secrets_only_by_reference(endpoint: str) -> None:
    infrastructure, tasks = _world(endpoint)
    infrastructure.ensure()
    first = _spec(
        infrastructure, "123.dkr.ecr.eu-west-1.amazonaws.com/shipyard/shop:1.2.0-abc1234", "r1"
    )
    assert tasks.changes(first) == [
        "shipyard-shop-production: first revision "
        "(123.dkr.ecr.eu-west-1.amazonaws.com/shipyard/shop:1.2.0-abc1234)"
    ]
    one = tasks.register(first)
    assert one.endswith("task-definition/shipyard-shop-production:1")
    assert tasks.changes(first) == []  # nothing new

    second = _spec(
        infrastructure, "123.dkr.ecr.eu-west-1.amazonaws.com/shipyard/shop:1.3.0-def5678", "r2"
    )
    assert tasks.changes(second) == [
        "image: 123.dkr.ecr.eu-west-1.amazonaws.com/shipyard/shop:1.2.0-abc1234 → "
        "123.dkr.ecr.eu-west-1.amazonaws.com/shipyard/shop:1.3.0-def5678"
    ]
    two = tasks.register(second)
    assert two.endswith(":2")
    assert tasks.revisions() == [two, one]  # newest first: a rollback's way back

    described = client("ecs", endpoint).describe_task_definition(taskDefinition=two)
    definition = described["taskDefinition"]
    container = definition["containerDefinitions"][0]
    assert definition["requiresCompatibilities"] == ["FARGATE"]
    assert (definition["cpu"], definition["memory"]) == ("256", "512")
    assert definition["executionRoleArn"].endswith(":role/shipyard-shop-production-execution")
    assert container["environment"] == [{"name": "LOG_LEVEL", "value": "info"}]
    assert {s["name"] for s in container["secrets"]} == set(SECRETS)
    assert all(":secretsmanager:" in s["valueFrom"] for s in container["secrets"])
    assert container["logConfiguration"]["options"]["awslogs-group"] == "/shipyard/shop/production"
    assert container["dockerLabels"]["org.opencontainers.image.revision"] == "abc1234"
    shown = json.dumps(described, default=str)
    for value in SECRETS.values():
        assert value not in shown


def test_a_size_change_is_part_of_the_diff(endpoint: str) -> None:
    infrastructure, tasks = _world(endpoint, cpu=512, memory=2048)
    infrastructure.ensure()
    spec = _spec(infrastructure, "img:3", "r3")
    changes = tasks.changes(spec)
    assert "cpu: 256 → 512" in changes and "memory: 512 → 2048" in changes


@pytest.mark.parametrize(
    ("cpu", "memory", "message"),
    [
        (300, 512, "cpu 300 is not a Fargate size (one of 256, 512, 1024"),
        (256, 4096, "memory 4096 MiB is not offered with cpu 256 (512, 1024, 2048 MiB)"),
        (
            1024,
            1024,
            "memory 1024 MiB is not offered with cpu 1024 (2048 to 8192 in steps of 1024 MiB)",
        ),
    ],
)
def test_fargate_sizes_are_checked_offline(cpu: int, memory: int, message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        AwsSettings(region=REGION, subnets=["a", "b"], cpu=cpu, memory=memory)
