"""Where an AWS environment runs, against the AWS stand-in (moto's server on loopback): the
minimal VPC shipyard creates when no subnets are given, the security groups it creates (each
open only as far as it must be), a plan that reads only, what destroy removes (only what is
tagged as the environment's); the wait for network interfaces AWS releases late, from recorded
answers (botocore's Stubber)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import Stubber

from shipyard.providers.aws import AwsNames
from shipyard.providers.aws._network import AwsNetwork
from tests.aws_standin import InstantClock, client, moto_server, standin_clients, two_subnets


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


def _network(
    endpoint: str, environment: str, *, port: int = 8080, database: bool = True, **settings: Any
) -> AwsNetwork:
    clients = standin_clients(endpoint, **{"subnets": [], **settings})
    return AwsNetwork(
        AwsNames("shop", environment),
        clients.settings,
        clients,
        port=port,
        database=database,
        clock=InstantClock(),
    )


def _vpcs(endpoint: str) -> dict[str, dict[str, str]]:
    """Every VPC on the stand-in and its tags."""
    return {
        v["VpcId"]: {t["Key"]: t["Value"] for t in v.get("Tags", [])}
        for v in client("ec2", endpoint).describe_vpcs()["Vpcs"]
    }


def _group(endpoint: str, name: str) -> dict[str, Any]:
    [group] = client("ec2", endpoint).describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [name]}]
    )["SecurityGroups"]
    return group


def _ingress(group: dict[str, Any]) -> list[tuple[int, list[str], list[str]]]:
    return [
        (
            p["FromPort"],
            [r["CidrIp"] for r in p.get("IpRanges", [])],
            [g["GroupId"] for g in p.get("UserIdGroupPairs", [])],
        )
        for p in group["IpPermissions"]
    ]


def test_without_subnets_a_minimal_vpc_is_created_and_each_group_admits_only_its_source(
    endpoint: str,
) -> None:
    before = _vpcs(endpoint)
    network = _network(endpoint, "fresh")
    planned = [str(a) for a in network.plan()]
    assert _vpcs(endpoint) == before  # plan changes nothing
    assert planned == [
        "ec2: create VPC 10.0.0.0/16 shipyard-shop-fresh",
        "ec2: create the internet gateway of VPC shipyard-shop-fresh",
        "ec2: route 0.0.0.0/0 to the internet gateway in VPC shipyard-shop-fresh",
        "ec2: create public subnet 10.0.0.0/20 in eu-west-1a shipyard-shop-fresh-eu-west-1a",
        "ec2: create public subnet 10.0.16.0/20 in eu-west-1b shipyard-shop-fresh-eu-west-1b",
        "ec2: create security group (HTTP from anywhere) shipyard-shop-fresh-load-balancer",
        "ec2: create security group (port 8080 from the load balancer) shipyard-shop-fresh-tasks",
        "ec2: create security group (PostgreSQL from the tasks) shipyard-shop-fresh-database",
    ]
    assert [str(a) for a in network.ensure()] == planned
    assert _network(endpoint, "fresh").plan() == []  # a second ensure changes nothing

    ec2 = client("ec2", endpoint)
    vpc = network.vpc()
    assert vpc is not None and vpc not in before
    assert _vpcs(endpoint)[vpc] == {"Name": "shipyard-shop-fresh", "shipyard:app": "shop",
                                    "shipyard:env": "fresh"}  # fmt: skip
    hostnames = ec2.describe_vpc_attribute(VpcId=vpc, Attribute="enableDnsHostnames")
    assert hostnames["EnableDnsHostnames"]["Value"] is True
    [gateway] = ec2.describe_internet_gateways(
        Filters=[{"Name": "attachment.vpc-id", "Values": [vpc]}]
    )["InternetGateways"]
    [main] = ec2.describe_route_tables(
        Filters=[
            {"Name": "vpc-id", "Values": [vpc]},
            {"Name": "association.main", "Values": ["true"]},
        ]
    )["RouteTables"]
    assert {"DestinationCidrBlock": "0.0.0.0/0", "GatewayId": gateway["InternetGatewayId"]}.items() <= next(
        r for r in main["Routes"] if r.get("DestinationCidrBlock") == "0.0.0.0/0"
    ).items()  # fmt: skip
    subnets = ec2.describe_subnets(SubnetIds=network.subnets())["Subnets"]
    assert sorted((s["CidrBlock"], s["AvailabilityZone"], s["MapPublicIpOnLaunch"]) for s in subnets) == [
        ("10.0.0.0/20", "eu-west-1a", True), ("10.0.16.0/20", "eu-west-1b", True),
    ]  # fmt: skip

    balancer = _group(endpoint, "shipyard-shop-fresh-load-balancer")
    tasks = _group(endpoint, "shipyard-shop-fresh-tasks")
    database = _group(endpoint, "shipyard-shop-fresh-database")
    assert {balancer["VpcId"], tasks["VpcId"], database["VpcId"]} == {vpc}
    assert _ingress(balancer) == [(80, ["0.0.0.0/0"], [])]
    assert _ingress(tasks) == [(8080, [], [balancer["GroupId"]])]
    assert _ingress(database) == [(5432, [], [tasks["GroupId"]])]

    # The tasks run in the two public subnets, behind their group, with public addresses
    # (no NAT gateway: they pull their images through the internet gateway).
    placed = network.tasks()
    assert (sorted(placed.subnets), list(placed.security_groups), placed.public_ip) == (
        sorted(network.subnets()), [tasks["GroupId"]], True,
    )  # fmt: skip
    assert network.security_groups("database") == [database["GroupId"]]


def test_a_changed_port_is_admitted_before_the_switch_and_the_old_one_kept(endpoint: str) -> None:
    _network(endpoint, "ports", database=False).ensure()
    moved = _network(endpoint, "ports", port=9090, database=False)
    assert [str(a) for a in moved.plan()] == [
        "ec2: allow port 9090 from the load balancer in security group shipyard-shop-ports-tasks"
    ]
    moved.ensure()
    balancer = _group(endpoint, "shipyard-shop-ports-load-balancer")
    # The tasks still serving on 8080 stay reachable until the new ones take over.
    assert sorted(_ingress(_group(endpoint, "shipyard-shop-ports-tasks"))) == [
        (8080, [], [balancer["GroupId"]]), (9090, [], [balancer["GroupId"]]),
    ]  # fmt: skip
    assert moved.plan() == []


def test_a_blackhole_default_route_is_replaced(endpoint: str) -> None:
    # A gateway deleted under the VPC (a destroy stopped halfway) leaves its route dead.
    network = _network(endpoint, "routes", database=False)
    network.ensure()
    vpc = network.vpc()
    assert vpc is not None
    ec2 = client("ec2", endpoint)
    [gateway] = ec2.describe_internet_gateways(
        Filters=[{"Name": "attachment.vpc-id", "Values": [vpc]}]
    )["InternetGateways"]
    ec2.detach_internet_gateway(InternetGatewayId=gateway["InternetGatewayId"], VpcId=vpc)
    ec2.delete_internet_gateway(InternetGatewayId=gateway["InternetGatewayId"])
    again = _network(endpoint, "routes", database=False)
    assert [str(a) for a in again.plan()] == [
        "ec2: create the internet gateway of VPC shipyard-shop-routes",
        "ec2: route 0.0.0.0/0 to the internet gateway in VPC shipyard-shop-routes",
    ]
    again.ensure()
    [new] = ec2.describe_internet_gateways(
        Filters=[{"Name": "attachment.vpc-id", "Values": [vpc]}]
    )["InternetGateways"]
    [main] = ec2.describe_route_tables(
        Filters=[
            {"Name": "vpc-id", "Values": [vpc]},
            {"Name": "association.main", "Values": ["true"]},
        ]
    )["RouteTables"]
    default = [r for r in main["Routes"] if r.get("DestinationCidrBlock") == "0.0.0.0/0"]
    assert [r["GatewayId"] for r in default] == [new["InternetGatewayId"]]
    assert again.plan() == []


def test_given_subnets_get_groups_in_their_vpc_and_given_groups_are_used_as_they_are(
    endpoint: str,
) -> None:
    subnets = two_subnets(endpoint)
    vpc = client("ec2", endpoint).describe_subnets(SubnetIds=subnets)["Subnets"][0]["VpcId"]
    network = _network(endpoint, "given", subnets=subnets, database=False)
    assert [str(a) for a in network.plan()] == [
        "ec2: create security group (HTTP from anywhere) shipyard-shop-given-load-balancer",
        "ec2: create security group (port 8080 from the load balancer) shipyard-shop-given-tasks",
    ]
    network.ensure()
    assert network.vpc() == vpc
    assert _group(endpoint, "shipyard-shop-given-tasks")["VpcId"] == vpc
    placed = network.tasks()
    assert (list(placed.subnets), placed.public_ip) == (subnets, False)
    # The operator's VPC is never removed: only the groups shipyard made in it.
    assert [str(a) for a in network.removal()] == [
        "ec2: delete security group shipyard-shop-given-tasks",
        "ec2: delete security group shipyard-shop-given-load-balancer",
    ]
    network.remove()
    assert vpc in _vpcs(endpoint)

    own = client("ec2", endpoint).create_security_group(
        GroupName="operators", Description="the operator's", VpcId=vpc
    )["GroupId"]
    theirs = _network(endpoint, "theirs", subnets=subnets, security_groups=[own],
                      assign_public_ip=True)  # fmt: skip
    assert theirs.plan() == []
    assert theirs.removal() == []
    assert (theirs.security_groups("load-balancer"), theirs.tasks().public_ip) == ([own], True)


def test_destroy_removes_the_vpc_it_created_and_nothing_else(endpoint: str) -> None:
    _network(endpoint, "doomed").ensure()
    _network(endpoint, "neighbour").ensure()
    # A VPC of the same name shipyard did not create (no shipyard tags) survives.
    ec2 = client("ec2", endpoint)
    untagged = ec2.create_vpc(
        CidrBlock="10.9.0.0/16",
        TagSpecifications=[{"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": "shipyard-shop-doomed"}]}],
    )["Vpc"]["VpcId"]  # fmt: skip
    doomed = _network(endpoint, "doomed")
    vpc = doomed.vpc()
    before = _vpcs(endpoint)
    listed = [str(a) for a in doomed.removal()]
    assert _vpcs(endpoint) == before  # listing removes nothing
    assert listed == [
        "ec2: delete security group shipyard-shop-doomed-database",
        "ec2: delete security group shipyard-shop-doomed-tasks",
        "ec2: delete security group shipyard-shop-doomed-load-balancer",
        "ec2: delete subnet 10.0.0.0/20 shipyard-shop-doomed-eu-west-1a",
        "ec2: delete subnet 10.0.16.0/20 shipyard-shop-doomed-eu-west-1b",
        "ec2: delete the internet gateway of VPC shipyard-shop-doomed",
        f"ec2: delete VPC {vpc} shipyard-shop-doomed",
    ]
    assert [str(a) for a in doomed.remove()] == listed
    after = _vpcs(endpoint)
    assert set(before) - set(after) == {vpc}
    assert untagged in after
    assert _network(endpoint, "neighbour").vpc() in after
    assert _network(endpoint, "doomed").removal() == []
    assert not ec2.describe_internet_gateways(
        Filters=[{"Name": "tag:shipyard:env", "Values": ["doomed"]}]
    )["InternetGateways"]


def test_a_vpc_left_half_made_is_finished(endpoint: str) -> None:
    # A deploy stopped right after creating the VPC: the next one adds what is missing.
    network = _network(endpoint, "halfway", database=False)
    network.plan()[0].run()
    assert [str(a) for a in _network(endpoint, "halfway", database=False).plan()][:3] == [
        "ec2: create the internet gateway of VPC shipyard-shop-halfway",
        "ec2: route 0.0.0.0/0 to the internet gateway in VPC shipyard-shop-halfway",
        "ec2: create public subnet 10.0.0.0/20 in eu-west-1a shipyard-shop-halfway-eu-west-1a",
    ]
    _network(endpoint, "halfway", database=False).ensure()
    assert _network(endpoint, "halfway", database=False).plan() == []
    _network(endpoint, "halfway", database=False).remove()


def test_a_group_still_in_use_is_deleted_once_aws_releases_it() -> None:
    """AWS releases a deleted load balancer's network interfaces over minutes: until then it
    answers DependencyViolation, and destroy waits (bounded), then goes on."""
    clients = standin_clients(None, subnets=["subnet-a", "subnet-b"], security_groups=[])
    network = AwsNetwork(AwsNames("shop", "slow"), clients.settings, clients, port=8080,
                         database=False, clock=InstantClock())  # fmt: skip
    stub = Stubber(clients["ec2"])
    stub.add_response("describe_subnets", {"Subnets": [{"SubnetId": "subnet-a", "VpcId": "vpc-1"}]})
    tags = [{"Key": "shipyard:app", "Value": "shop"}, {"Key": "shipyard:env", "Value": "slow"}]
    for name, ident in (("tasks", "sg-t"), ("load-balancer", "sg-l")):
        stub.add_response("describe_security_groups", {"SecurityGroups": [
            {"GroupId": ident, "GroupName": f"shipyard-shop-slow-{name}", "Tags": tags},
        ]})  # fmt: skip
    for _ in range(3):
        stub.add_client_error(
            "delete_security_group", "DependencyViolation", "resource sg-t has a dependent object"
        )
    stub.add_response("delete_security_group", {}, {"GroupId": "sg-t"})
    stub.add_response("delete_security_group", {}, {"GroupId": "sg-l"})
    with stub:
        actions = network.removal()
        for action in actions:
            action.run()
    stub.assert_no_pending_responses()

    refusing = Stubber(clients["ec2"])
    for _ in range(200):
        refusing.add_client_error("delete_security_group", "DependencyViolation", "in use")
    with refusing, pytest.raises(Exception, match=r"still in use after 900s") as caught:
        actions[0].run()
    assert "run `shipyard destroy` again later" in str(getattr(caught.value, "hint", ""))
