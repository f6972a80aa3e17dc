"""Blue-green on AWS: the listener's switch between the two slots' target groups on the AWS
stand-in (moto's server on loopback); ECS deployments completing or failing and targets turning
healthy or not from recorded answers (botocore's Stubber), which the stand-in cannot simulate."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import Stubber

from shipyard.errors import DeployFailed
from shipyard.providers.aws import AwsNames
from shipyard.providers.aws._settings import Network
from shipyard.providers.aws._traffic import POLL, AwsTraffic
from shipyard.waiting import wait_until
from tests.aws_standin import (
    InstantClock,
    client,
    moto_server,
    standin_clients,
    two_subnets,
)

NAMES = AwsNames("shop", "production")


@pytest.fixture(scope="module")
def alb(endpoint: str) -> dict[str, Any]:
    """A VPC with two subnets, an ALB, the two slots' target groups, a listener to blue."""
    elb = client("elbv2", endpoint)
    subnets = two_subnets(endpoint)
    vpc = client("ec2", endpoint).describe_subnets(SubnetIds=subnets)["Subnets"][0]["VpcId"]
    balancer = elb.create_load_balancer(Name="shipyard-shop", Subnets=subnets)["LoadBalancers"][0]
    groups = {
        slot: elb.create_target_group(
            Name=NAMES.target_group(slot), Protocol="HTTP", Port=8080, VpcId=vpc,
            TargetType="ip", HealthCheckPath="/health",
        )["TargetGroups"][0]["TargetGroupArn"]
        for slot in ("blue", "green")
    }  # fmt: skip
    listener = elb.create_listener(
        LoadBalancerArn=balancer["LoadBalancerArn"], Protocol="HTTP", Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": groups["blue"]}],
    )["Listeners"][0]["ListenerArn"]  # fmt: skip
    return {"listener": listener, "groups": groups, "subnets": subnets}


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


def _traffic(endpoint: str, alb: dict[str, Any]) -> AwsTraffic:
    clients = standin_clients(endpoint)
    return AwsTraffic(
        NAMES, "shipyard-shop-production", alb["listener"], alb["groups"], clients,
        clock=InstantClock(),
    )  # fmt: skip


def test_the_switch_moves_every_request_and_keeps_the_old_slot_registered(
    endpoint: str, alb: dict[str, Any]
) -> None:
    traffic = _traffic(endpoint, alb)
    assert traffic.weights() == {"blue": 1, "green": 0}
    assert traffic.live_slot() == "blue"
    assert traffic.switch("green") == (
        "the listener forwards to green (shipyard-shop-production-green)"
    )
    assert traffic.weights() == {"blue": 0, "green": 100}
    assert traffic.live_slot() == "green"
    listener = client("elbv2", endpoint).describe_listeners(ListenerArns=[alb["listener"]])
    forward = listener["Listeners"][0]["DefaultActions"][0]["ForwardConfig"]["TargetGroups"]
    assert {g["TargetGroupArn"] for g in forward} == set(alb["groups"].values())
    traffic.switch("blue")  # and back
    assert traffic.live_slot() == "blue"


def test_target_group_names_fit_elbs_limit() -> None:
    assert NAMES.target_group("green") == "shipyard-shop-production-green"
    long = AwsNames("events-library-server", "production-eu")
    names = {long.target_group("blue"), long.target_group("green")}
    assert all(len(n) <= 32 for n in names) and len(names) == 2
    other = AwsNames("events-library-server", "production-us")
    assert long.target_group("blue") != other.target_group("blue")


def _stubbed(alb: dict[str, Any]) -> tuple[AwsTraffic, Stubber, Stubber]:
    traffic = _traffic("http://127.0.0.1:1", alb)
    return traffic, Stubber(traffic.clients["ecs"]), Stubber(traffic.clients["elbv2"])


def _service(stub: Stubber, state: str, reason: str = "") -> None:
    deployment = {"status": "PRIMARY", "rolloutState": state, "runningCount": 2}
    if reason:
        deployment["rolloutStateReason"] = reason
    stub.add_response(
        "describe_services",
        {
            "services": [
                {"serviceName": "shipyard-shop-production-green", "deployments": [deployment]}
            ]
        },
        {"cluster": "shipyard-shop-production", "services": ["shipyard-shop-production-green"]},
    )


def test_a_deployment_ecs_completes_passes(alb: dict[str, Any]) -> None:
    traffic, ecs, _ = _stubbed(alb)
    _service(ecs, "IN_PROGRESS")
    _service(ecs, "IN_PROGRESS")
    _service(ecs, "COMPLETED")
    with ecs:
        assert traffic.wait_deployed("green", 600) == (
            "shipyard-shop-production-green: 2 task(s) running"
        )
        ecs.assert_no_pending_responses()


def test_a_deployment_ecs_rolls_back_fails_the_deploy(alb: dict[str, Any]) -> None:
    traffic, ecs, _ = _stubbed(alb)
    _service(ecs, "IN_PROGRESS")
    _service(ecs, "FAILED", "ECS deployment circuit breaker: tasks failed to start.")
    with ecs, pytest.raises(DeployFailed) as caught:
        traffic.wait_deployed("green", 600)
    assert "ECS failed its deployment: ECS deployment circuit breaker" in caught.value.message
    assert caught.value.hint is not None and "previous version kept serving" in caught.value.hint


def _targets(stub: Stubber, alb: dict[str, Any], *states: tuple[str, str]) -> None:
    stub.add_response(
        "describe_target_health",
        {"TargetHealthDescriptions": [
            {"Target": {"Id": f"10.0.1.{i}", "Port": 8080},
             "TargetHealth": {"State": state, **({"Description": why} if why else {})}}
            for i, (state, why) in enumerate(states)
        ]},
        {"TargetGroupArn": alb["groups"]["green"]},
    )  # fmt: skip


def test_targets_that_turn_healthy_pass_the_gate(alb: dict[str, Any]) -> None:
    traffic, _, elb = _stubbed(alb)
    _targets(elb, alb, ("initial", ""), ("initial", ""))
    _targets(elb, alb, ("healthy", ""), ("initial", ""))
    _targets(elb, alb, ("healthy", ""), ("healthy", ""))
    with elb:
        assert traffic.wait_healthy("green", 300) == (
            "shipyard-shop-production-green: 2 healthy target(s)"
        )


def test_an_unhealthy_target_ends_the_gate_at_once(alb: dict[str, Any]) -> None:
    traffic, _, elb = _stubbed(alb)
    _targets(elb, alb, ("initial", ""), ("initial", ""))
    _targets(
        elb, alb, ("healthy", ""), ("unhealthy", "Health checks failed with these codes: [503]")
    )
    with elb, pytest.raises(DeployFailed) as caught:
        traffic.wait_healthy("green", 300)
    assert "10.0.1.1:8080: Health checks failed with these codes: [503]" in caught.value.message
    elb.assert_no_pending_responses()


def test_targets_that_never_settle_fail_at_the_deadline(alb: dict[str, Any]) -> None:
    traffic, _, elb = _stubbed(alb)
    polls = 0

    def poll() -> bool:
        nonlocal polls
        polls += 1
        return False

    wait_until(poll, timeout=120, interval=POLL, clock=InstantClock())
    for _ in range(polls):
        _targets(elb, alb, ("initial", ""))
    with elb, pytest.raises(DeployFailed, match="not all healthy within 120s"):
        traffic.wait_healthy("green", 120)


def test_the_slots_services_run_behind_their_target_groups(
    endpoint: str, alb: dict[str, Any]
) -> None:
    ecs = client("ecs", endpoint)
    ecs.create_cluster(clusterName="shipyard-shop-production")
    definitions = [
        ecs.register_task_definition(
            family="shipyard-shop-production", networkMode="awsvpc",
            requiresCompatibilities=["FARGATE"], cpu="256", memory="512",
            containerDefinitions=[{"name": "app", "image": f"shop:{tag}", "essential": True}],
        )["taskDefinition"]["taskDefinitionArn"]
        for tag in ("1", "2")
    ]  # fmt: skip
    traffic = _traffic(endpoint, alb)
    assert traffic.missing_services() == ["blue", "green"]
    network = Network(subnets=tuple(alb["subnets"]))
    traffic.create_service("blue", definitions[0], port=8080, network=network, desired=2)
    traffic.create_service("green", definitions[0], port=8080, network=network, desired=0)
    assert traffic.missing_services() == []
    services = {
        s["serviceName"]: s
        for s in ecs.describe_services(
            cluster="shipyard-shop-production",
            services=["shipyard-shop-production-blue", "shipyard-shop-production-green"],
        )["services"]
    }
    blue = services["shipyard-shop-production-blue"]
    assert blue["desiredCount"] == 2 and blue["launchType"] == "FARGATE"
    assert blue["loadBalancers"] == [
        {"targetGroupArn": alb["groups"]["blue"], "containerName": "app", "containerPort": 8080}
    ]
    assert services["shipyard-shop-production-green"]["desiredCount"] == 0

    traffic.deploy_slot("green", definitions[1], 2)  # a release goes to the idle slot
    green = ecs.describe_services(
        cluster="shipyard-shop-production", services=["shipyard-shop-production-green"]
    )["services"][0]
    assert green["taskDefinition"] == definitions[1]
    assert green["desiredCount"] == 2


def test_a_slots_service_asks_ecs_for_its_circuit_breaker(alb: dict[str, Any]) -> None:
    # The stand-in does not describe a service's deployment configuration: the request says it.
    traffic, ecs, _ = _stubbed(alb)
    ecs.add_response(
        "create_service",
        {"service": {"serviceName": "shipyard-shop-production-blue"}},
        {
            "cluster": "shipyard-shop-production", "serviceName": "shipyard-shop-production-blue",
            "taskDefinition": "td:1", "desiredCount": 2, "launchType": "FARGATE",
            "loadBalancers": [{"targetGroupArn": alb["groups"]["blue"], "containerName": "app",
                               "containerPort": 8080}],
            "networkConfiguration": {"awsvpcConfiguration": {
                "subnets": ["subnet-a"], "securityGroups": [], "assignPublicIp": "DISABLED",
            }},
            "deploymentConfiguration": {
                "deploymentCircuitBreaker": {"enable": True, "rollback": True},
                "minimumHealthyPercent": 100, "maximumPercent": 200,
            },
            "healthCheckGracePeriodSeconds": 60, "propagateTags": "SERVICE",
            "tags": [{"key": "shipyard:app", "value": "shop"},
                     {"key": "shipyard:env", "value": "production"}],
        },
    )  # fmt: skip
    with ecs:
        traffic.create_service(
            "blue", "td:1", port=8080, network=Network(subnets=("subnet-a",)), desired=2
        )
        ecs.assert_no_pending_responses()
