"""An AWS environment's base resources against the AWS stand-in (moto's server on loopback):
what a first ``ensure`` creates, listed by the AWS APIs afterwards; that a second changes
nothing; that ``plan`` changes nothing; secrets following the env file; and that ``remove``
deletes what shipyard created and nothing else."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from shipyard.errors import ConfigError
from shipyard.providers.aws import AwsInfrastructure, AwsNames
from shipyard.providers.aws._network import AwsNetwork
from tests.aws_standin import REGION, client, moto_server, standin_clients, two_subnets

SECRETS = {"DATABASE_URL": "postgres://app:s3cr3t-pw@db/app", "API_KEY": "k-very-secret"}


SUBNETS: list[str] = []


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        SUBNETS[:] = two_subnets(url)
        yield url


def _infrastructure(
    endpoint: str,
    environment: str,
    secrets: dict[str, str] | None = None,
    readable: tuple[str, ...] = (),
    **settings: Any,
) -> AwsInfrastructure:
    defaults = {"log_retention_days": 14, "tags": {"team": "events"}, "subnets": SUBNETS}
    clients = standin_clients(endpoint, **{**defaults, **settings})
    names = AwsNames("shop", environment)
    return AwsInfrastructure(
        names,
        clients.settings,
        SECRETS if secrets is None else secrets,
        clients,
        AwsNetwork(names, clients.settings, clients, port=8080, database=False),
        readable=readable,
    )


def _tags(pairs: list[dict[str, str]]) -> dict[str, str]:
    return {p.get("Key", p.get("key", "")): p.get("Value", p.get("value", "")) for p in pairs}


def _active_clusters(ecs: Any) -> list[str]:
    """ECS lists a deleted cluster for a while, INACTIVE."""
    arns = ecs.list_clusters()["clusterArns"]
    described = ecs.describe_clusters(clusters=arns)["clusters"] if arns else []
    return sorted(c["clusterName"] for c in described if c["status"] == "ACTIVE")


def _inventory(endpoint: str) -> dict[str, Any]:
    """What exists on the stand-in, as the AWS APIs list it."""
    ecr, ecs, logs = client("ecr", endpoint), client("ecs", endpoint), client("logs", endpoint)
    iam, secrets = client("iam", endpoint), client("secretsmanager", endpoint)
    elb = client("elbv2", endpoint)
    return {
        "target_groups": sorted(g["TargetGroupName"] for g in elb.describe_target_groups()["TargetGroups"]),
        "load_balancers": sorted(b["LoadBalancerName"] for b in elb.describe_load_balancers()["LoadBalancers"]),
        "repositories": sorted(r["repositoryName"] for r in ecr.describe_repositories()["repositories"]),
        "clusters": _active_clusters(ecs),
        "log_groups": {g["logGroupName"]: g.get("retentionInDays") for g in logs.describe_log_groups()["logGroups"]},
        "roles": sorted(r["RoleName"] for r in iam.list_roles()["Roles"] if r["RoleName"].startswith("shipyard-")),
        "secrets": sorted(s["Name"] for s in secrets.list_secrets()["SecretList"]),
    }  # fmt: skip


def test_a_first_ensure_creates_exactly_the_environments_resources(endpoint: str) -> None:
    before = _inventory(endpoint)
    infrastructure = _infrastructure(endpoint, "first")
    planned = [str(a) for a in infrastructure.plan()]
    assert _inventory(endpoint) == before  # plan changes nothing
    assert planned == [
        "ec2: create security group (HTTP from anywhere) shipyard-shop-first-load-balancer",
        "ec2: create security group (port 8080 from the load balancer) shipyard-shop-first-tasks",
        "ecr: create repository shipyard/shop/first",
        "ecs: create cluster shipyard-shop-first",
        "logs: create log group (retention 14 days) /shipyard/shop/first",
        "iam: create task execution role shipyard-shop-first-execution",
        "secretsmanager: create secret shipyard/shop/first/API_KEY",
        "secretsmanager: create secret shipyard/shop/first/DATABASE_URL",
        "elbv2: create target group of slot blue (port 8080, health /health) shipyard-shop-first-blue",
        "elbv2: create target group of slot green (port 8080, health /health) shipyard-shop-first-green",
        "elbv2: create load balancer and its HTTP listener shipyard-shop-first",
    ]
    done = [str(a) for a in infrastructure.ensure()]
    assert done == planned
    after = _inventory(endpoint)
    assert set(after["repositories"]) - set(before["repositories"]) == {"shipyard/shop/first"}
    assert set(after["clusters"]) - set(before["clusters"]) == {"shipyard-shop-first"}
    assert after["log_groups"]["/shipyard/shop/first"] == 14
    assert set(after["roles"]) - set(before["roles"]) == {"shipyard-shop-first-execution"}
    assert set(after["secrets"]) - set(before["secrets"]) == {
        "shipyard/shop/first/API_KEY", "shipyard/shop/first/DATABASE_URL",
    }  # fmt: skip

    assert set(after["target_groups"]) - set(before["target_groups"]) == {
        "shipyard-shop-first-blue", "shipyard-shop-first-green",
    }  # fmt: skip
    assert set(after["load_balancers"]) - set(before["load_balancers"]) == {"shipyard-shop-first"}
    listener = infrastructure.listener()
    assert listener is not None
    forward = client("elbv2", endpoint).describe_listeners(ListenerArns=[listener])["Listeners"][0]
    weights = {
        g["TargetGroupArn"]: g["Weight"]
        for g in forward["DefaultActions"][0]["ForwardConfig"]["TargetGroups"]
    }
    groups = infrastructure.target_groups()
    assert weights == {groups["blue"]: 100, groups["green"]: 0}

    # Each carries shipyard's tags and the operator's.
    wanted = {"shipyard:app": "shop", "shipyard:env": "first", "team": "events"}
    ecr = client("ecr", endpoint)
    arn = ecr.describe_repositories(repositoryNames=["shipyard/shop/first"])["repositories"][0]
    assert _tags(ecr.list_tags_for_resource(resourceArn=arn["repositoryArn"])["tags"]) == wanted
    cluster = client("ecs", endpoint).describe_clusters(
        clusters=["shipyard-shop-first"], include=["TAGS"]
    )["clusters"][0]
    assert _tags(cluster["tags"]) == wanted
    iam = client("iam", endpoint)
    assert _tags(iam.list_role_tags(RoleName="shipyard-shop-first-execution")["Tags"]) == wanted
    role = iam.get_role(RoleName="shipyard-shop-first-execution")["Role"]
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    attached = iam.list_attached_role_policies(RoleName="shipyard-shop-first-execution")
    assert [p["PolicyName"] for p in attached["AttachedPolicies"]] == [
        "AmazonECSTaskExecutionRolePolicy"
    ]
    policy = iam.get_role_policy(
        RoleName="shipyard-shop-first-execution", PolicyName="shipyard-read-secrets"
    )["PolicyDocument"]
    policy = json.loads(policy) if isinstance(policy, str) else policy
    [resource] = policy["Statement"][0]["Resource"]
    assert resource.endswith(":secret:shipyard/shop/first/*")
    secrets = client("secretsmanager", endpoint)
    stored = secrets.get_secret_value(SecretId="shipyard/shop/first/API_KEY")
    assert stored["SecretString"] == SECRETS["API_KEY"]

    # A second ensure finds everything in place.
    assert _infrastructure(endpoint, "first").plan() == []
    assert _infrastructure(endpoint, "first").ensure() == []
    assert _inventory(endpoint) == after


def test_secrets_follow_the_env_file_and_never_show_their_values(endpoint: str) -> None:
    _infrastructure(endpoint, "secrets").ensure()
    changed = {"DATABASE_URL": "postgres://app:rotated-pw@db/app", "NEW_TOKEN": "t-0ther-secret"}
    infrastructure = _infrastructure(endpoint, "secrets", secrets=changed)
    planned = [str(a) for a in infrastructure.plan()]
    assert planned == [
        "secretsmanager: update secret (its value changed) shipyard/shop/secrets/DATABASE_URL",
        "secretsmanager: create secret shipyard/shop/secrets/NEW_TOKEN",
        "secretsmanager: delete secret (no longer in the env file) shipyard/shop/secrets/API_KEY",
    ]
    shown = "\n".join(planned + [repr(a) for a in infrastructure.plan()])
    for value in (*SECRETS.values(), *changed.values()):
        assert value not in shown
    infrastructure.ensure()
    secrets = client("secretsmanager", endpoint)
    assert sorted(
        s["Name"] for s in secrets.list_secrets()["SecretList"] if "/secrets/" in s["Name"]
    ) == ["shipyard/shop/secrets/DATABASE_URL", "shipyard/shop/secrets/NEW_TOKEN"]
    value = secrets.get_secret_value(SecretId="shipyard/shop/secrets/DATABASE_URL")
    assert value["SecretString"] == changed["DATABASE_URL"]
    assert _infrastructure(endpoint, "secrets", secrets=changed).plan() == []


def test_a_changed_retention_is_set_again(endpoint: str) -> None:
    _infrastructure(endpoint, "retention").ensure()
    longer = _infrastructure(endpoint, "retention", log_retention_days=90)
    assert [str(a) for a in longer.plan()] == [
        "logs: set retention to 90 days of log group /shipyard/shop/retention"
    ]
    longer.ensure()
    groups = client("logs", endpoint).describe_log_groups(
        logGroupNamePrefix="/shipyard/shop/retention"
    )
    assert groups["logGroups"][0]["retentionInDays"] == 90


def test_remove_deletes_what_shipyard_created_and_nothing_else(endpoint: str) -> None:
    _infrastructure(endpoint, "doomed").ensure()
    _infrastructure(endpoint, "neighbour").ensure()
    # Same names as shipyard's, created by someone else (no shipyard tags): they must survive.
    client("ecs", endpoint).create_cluster(clusterName="shipyard-shop-untagged")
    client("logs", endpoint).create_log_group(logGroupName="/shipyard/shop/untagged")
    client("secretsmanager", endpoint).create_secret(
        Name="shipyard/shop/doomed/HANDMADE", SecretString="x"
    )
    before = _inventory(endpoint)
    doomed = _infrastructure(endpoint, "doomed")
    listed = [str(a) for a in doomed.removal()]
    assert _inventory(endpoint) == before  # listing removes nothing
    assert [str(a) for a in doomed.remove()] == listed
    after = _inventory(endpoint)
    gone = {key: sorted(set(before[key]) - set(after[key])) for key in before}
    assert gone == {
        "target_groups": ["shipyard-shop-doomed-blue", "shipyard-shop-doomed-green"],
        "load_balancers": ["shipyard-shop-doomed"],
        "repositories": ["shipyard/shop/doomed"],
        "clusters": ["shipyard-shop-doomed"],
        "log_groups": ["/shipyard/shop/doomed"],
        "roles": ["shipyard-shop-doomed-execution"],
        "secrets": ["shipyard/shop/doomed/API_KEY", "shipyard/shop/doomed/DATABASE_URL"],
    }
    assert "shipyard/shop/doomed/HANDMADE" in after["secrets"]
    assert "shipyard-shop-untagged" in after["clusters"]
    assert "shipyard-shop-neighbour" in after["clusters"]
    assert _infrastructure(endpoint, "doomed").removal() == []


def test_an_existing_cluster_is_used_never_created_nor_removed(endpoint: str) -> None:
    client("ecs", endpoint).create_cluster(clusterName="platform")
    infrastructure = _infrastructure(endpoint, "shared", cluster="platform")
    assert not any(a.service == "ecs" for a in infrastructure.plan())
    infrastructure.ensure()
    assert not any(a.service == "ecs" for a in infrastructure.removal())
    infrastructure.remove()
    assert "platform" in _inventory(endpoint)["clusters"]
    missing = _infrastructure(endpoint, "shared", cluster="no-such-cluster")
    with pytest.raises(ConfigError) as caught:
        missing.plan()
    assert "providers.aws.cluster" in str(caught.value)
    assert "'no-such-cluster' does not exist in eu-west-1" in str(caught.value)


def test_a_role_left_half_made_is_finished(endpoint: str) -> None:
    # An earlier ensure stopped right after creating the role (killed, or a quota on the next
    # call): the next plan attaches what is missing instead of taking the role as done.
    client("iam", endpoint).create_role(
        RoleName="shipyard-shop-halfway-execution",
        AssumeRolePolicyDocument="{}",
        Tags=[
            {"Key": "shipyard:app", "Value": "shop"},
            {"Key": "shipyard:env", "Value": "halfway"},
        ],
    )
    infrastructure = _infrastructure(endpoint, "halfway")
    assert [str(a) for a in infrastructure.plan() if a.service == "iam"] == [
        "iam: attach ECS's task execution policy to role shipyard-shop-halfway-execution",
        "iam: set the secrets policy of role shipyard-shop-halfway-execution",
    ]
    infrastructure.ensure()
    assert _infrastructure(endpoint, "halfway").plan() == []


def test_the_load_balancer_needs_two_subnets_of_one_vpc(endpoint: str) -> None:
    elsewhere = two_subnets(endpoint)  # in a VPC of their own
    with pytest.raises(ConfigError, match=r"providers\.aws\.subnets: the subnets are in 2 VPCs"):
        _infrastructure(endpoint, "nets", subnets=[SUBNETS[0], elsewhere[1]]).plan()
    assert _infrastructure(endpoint, "nets").plan()  # with both of one VPC, it plans


def test_an_existing_listener_is_used_and_must_exist(endpoint: str) -> None:
    _infrastructure(endpoint, "owner").ensure()
    listener = _infrastructure(endpoint, "owner").listener()
    borrowing = _infrastructure(endpoint, "borrow", listener_arn=listener)
    planned = [str(a) for a in borrowing.plan()]
    assert not any(a.startswith("elbv2: create load balancer") for a in planned)
    # The load balancer keeps its security groups; the tasks' admits those.
    assert [a for a in planned if a.startswith("ec2")] == [
        "ec2: create security group (port 8080 from the load balancer) shipyard-shop-borrow-tasks"
    ]
    borrowing.ensure()
    assert borrowing.listener() == listener
    ec2 = client("ec2", endpoint)
    [owners] = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": ["shipyard-shop-owner-load-balancer"]}]
    )["SecurityGroups"]
    [tasks] = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": ["shipyard-shop-borrow-tasks"]}]
    )["SecurityGroups"]
    [ingress] = tasks["IpPermissions"]
    assert [p["GroupId"] for p in ingress["UserIdGroupPairs"]] == [owners["GroupId"]]
    assert (ingress["FromPort"], ingress["ToPort"], ingress.get("IpRanges")) == (8080, 8080, [])
    gone = listener.rsplit("/", 1)[0] + "/0000000000000000"  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match=r"providers\.aws\.listener_arn: no listener"):
        _infrastructure(endpoint, "borrow", listener_arn=gone).plan()


def test_the_role_reads_the_database_password_secret_only_once_it_is_named(endpoint: str) -> None:
    _infrastructure(endpoint, "rdsread").ensure()
    arn = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:rds!db-0123-abcdef"
    named = _infrastructure(endpoint, "rdsread", readable=(arn,))
    assert [str(a) for a in named.plan()] == [
        "iam: set the secrets policy of role shipyard-shop-rdsread-execution"
    ]
    named.ensure()
    policy = client("iam", endpoint).get_role_policy(
        RoleName="shipyard-shop-rdsread-execution", PolicyName="shipyard-read-secrets"
    )["PolicyDocument"]
    policy = json.loads(policy) if isinstance(policy, str) else policy
    assert policy["Statement"][0]["Resource"][1:] == [arn]
    assert _infrastructure(endpoint, "rdsread", readable=(arn,)).plan() == []
