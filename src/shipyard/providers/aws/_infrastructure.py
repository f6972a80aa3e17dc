"""An AWS environment's base resources: what a deploy would create or change (``plan``), making
it so (``ensure``, idempotent), and removing what shipyard created (``remove``).

The resources, each tagged ``shipyard:app`` and ``shipyard:env`` (and ``providers.aws.tags``):
the ECR repository the app's images are pushed to, the ECS cluster (unless an existing one is
named), the CloudWatch log group with its retention, the task execution role (ECS's managed
policy, and reading this environment's secrets only), and one Secrets Manager secret per value
of the env file (the task definition refers to them; values never appear in plans, messages or
state). ``plan`` only reads. ``remove`` deletes only resources whose tags name this app and
environment: a same-named resource shipyard did not create survives, and so does an existing
cluster named in the settings.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from botocore import xform_name

from shipyard import aws
from shipyard.errors import ConfigError
from shipyard.providers._actions import Action, carry_out
from shipyard.providers.aws._settings import AwsNames, AwsSettings

if TYPE_CHECKING:
    from shipyard.providers.aws._network import AwsNetwork

SLOTS = ("blue", "green")
_HTTP = 80
EXECUTION_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
_SECRETS_POLICY = "shipyard-read-secrets"
_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ecs-tasks.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


class Clients:
    """One operation's AWS clients, made on first use from one session."""

    def __init__(self, settings: AwsSettings, *, session: Any = None) -> None:
        self.settings = settings
        self.session = session
        self._made: dict[str, Any] = {}

    def __getitem__(self, service: str) -> Any:
        if service not in self._made:
            self._made[service] = aws.client(
                service,
                region=self.settings.region,
                endpoint_url=self.settings.endpoint_url,
                session=self.session,
            )
        return self._made[service]

    def call(self, api: str, action: str, what: str, /, **params: Any) -> Any:
        """``api``'s ``action`` (``DescribeClusters``: the client's ``describe_clusters``) about
        resource ``what``, AWS's errors translated (``aws.call``)."""
        method = getattr(self[api], xform_name(action))
        return aws.call(api, action, method, what=what, **params)

    def find(self, api: str, action: str, what: str, /, *, missing: str, **params: Any) -> Any:
        """The answer of ``call``, or ``None`` when AWS answers ``missing`` (the error code of a
        resource that does not exist)."""
        try:
            return self.call(api, action, what, **params)
        except aws.AwsError as exc:
            if exc.code == missing:
                return None
            raise

    def later(self, api: str, action: str, what: str, /, **params: Any) -> Callable[[], Any]:
        """The same call, made when an ``Action`` runs."""
        return functools.partial(self.call, api, action, what, **params)


class AwsInfrastructure:
    """The base resources of one environment (see the module)."""

    def __init__(
        self,
        names: AwsNames,
        settings: AwsSettings,
        secrets: Mapping[str, str],
        clients: Clients,
        network: AwsNetwork,
        *,
        port: int = 8080,
        health_path: str = "/health",
        config_file: str = "shipyard.yml",
        readable: Sequence[str] = (),
    ) -> None:
        self.port = port
        self.health_path = health_path
        self.names = names
        self.settings = settings
        self.secrets = dict(secrets)
        self.clients = clients
        self.network = network
        self.config_file = config_file
        self.readable = tuple(readable)  # further secrets' ARNs the tasks read (RDS's password)
        self.tags = names.tags(settings.tags)

    def _call(self, api: str, action: str, what: str, /, **params: Any) -> Any:
        return self.clients.call(api, action, what, **params)

    def _later(self, api: str, action: str, what: str, /, **params: Any) -> Callable[[], Any]:
        return self.clients.later(api, action, what, **params)

    # -- what a deploy needs -----------------------------------------------------------------------
    def plan(self) -> list[Action]:
        """Every change ``ensure`` would make, in order; reads only."""
        return [
            *self.network.plan(),
            *self._repository(),
            *self._cluster(),
            *self._log_group(),
            *self._role(),
            *self._secrets(),
            *self._target_groups(),
            *self._load_balancer(),
        ]

    def ensure(self) -> list[Action]:
        """Make every planned change; returns them (none: everything was there already)."""
        return carry_out(self.plan())

    def _find_repository(self) -> Any:
        name = self.names.repository
        return self.clients.find("ecr", "DescribeRepositories", name,
                                 missing="RepositoryNotFoundException", repositoryNames=[name])  # fmt: skip

    def _repository(self) -> list[Action]:
        name = self.names.repository
        if self._find_repository() is None:
            create = self._later(
                "ecr", "CreateRepository", name,
                repositoryName=name, imageTagMutability="IMMUTABLE",
                tags=[{"Key": k, "Value": v} for k, v in self.tags.items()],
            )  # fmt: skip
            return [Action("ecr", "create repository", name, create)]
        return []

    def _cluster(self) -> list[Action]:
        name = self.settings.cluster or self.names.cluster
        found = self._call("ecs", "DescribeClusters", name, clusters=[name])
        active = any(c.get("status") == "ACTIVE" for c in found.get("clusters", []))
        if active:
            return []
        if self.settings.cluster is not None:
            raise ConfigError.at(
                self.config_file, "providers.aws.cluster",
                f"ECS cluster {name!r} does not exist in {self.settings.region}",
            )  # fmt: skip
        create = self._later(
            "ecs", "CreateCluster", name, clusterName=name,
            tags=[{"key": k, "value": v} for k, v in self.tags.items()],
        )  # fmt: skip
        return [Action("ecs", "create cluster", name, create)]

    def _log_group(self) -> list[Action]:
        name, days = self.names.log_group, self.settings.log_retention_days
        found = self._call("logs", "DescribeLogGroups", name, logGroupNamePrefix=name)
        group = next((g for g in found.get("logGroups", []) if g["logGroupName"] == name), None)
        retain = self._later(
            "logs", "PutRetentionPolicy", name,
            logGroupName=name, retentionInDays=days,
        )  # fmt: skip
        if group is None:

            def create() -> None:
                self._call("logs", "CreateLogGroup", name,
                           logGroupName=name, tags=self.tags)  # fmt: skip
                retain()

            return [Action("logs", f"create log group (retention {days} days)", name, create)]
        if group.get("retentionInDays") != days:
            return [Action("logs", f"set retention to {days} days of log group", name, retain)]
        return []

    def _secrets_policy(self) -> dict[str, Any]:
        region, prefix = self.settings.region, self.names.secret_prefix
        return {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "secretsmanager:GetSecretValue",
                    "Resource": [
                        f"arn:aws:secretsmanager:{region}:*:secret:{prefix}*",
                        *self.readable,
                    ],
                }
            ],
        }

    def _role(self) -> list[Action]:
        name = self.names.execution_role
        policy = json.dumps(self._secrets_policy())
        put_policy = self._later(
            "iam", "PutRolePolicy", name,
            RoleName=name, PolicyName=_SECRETS_POLICY, PolicyDocument=policy,
        )  # fmt: skip
        if self.clients.find("iam", "GetRole", name, missing="NoSuchEntity", RoleName=name) is None:

            def create() -> None:
                self._call(
                    "iam", "CreateRole", name, RoleName=name,
                    AssumeRolePolicyDocument=json.dumps(_TRUST),
                    Description=f"ECS task execution of shipyard's {self.names.app} "
                    f"{self.names.environment}",
                    Tags=[{"Key": k, "Value": v} for k, v in self.tags.items()],
                )  # fmt: skip
                self._call("iam", "AttachRolePolicy", name,
                           RoleName=name, PolicyArn=EXECUTION_POLICY)  # fmt: skip
                put_policy()

            return [Action("iam", "create task execution role", name, create)]
        actions = []
        attached = self._call("iam", "ListAttachedRolePolicies",
                              name, RoleName=name)  # fmt: skip
        if EXECUTION_POLICY not in [p["PolicyArn"] for p in attached["AttachedPolicies"]]:
            attach = self._later("iam", "AttachRolePolicy", name,
                                 RoleName=name, PolicyArn=EXECUTION_POLICY)  # fmt: skip
            actions.append(
                Action("iam", "attach ECS's task execution policy to role", name, attach)
            )
        current = self.clients.find("iam", "GetRolePolicy", name, missing="NoSuchEntity",
                                    RoleName=name, PolicyName=_SECRETS_POLICY)  # fmt: skip
        document = current["PolicyDocument"] if current is not None else None
        if isinstance(document, str):
            document = json.loads(document)
        if document != self._secrets_policy():
            actions.append(Action("iam", "set the secrets policy of role", name, put_policy))
        return actions

    def _owned_secrets(self) -> dict[str, dict[str, Any]]:
        """This environment's secrets on AWS by key (tagged as its own)."""
        prefix = self.names.secret_prefix
        pages = (
            self.clients["secretsmanager"]
            .get_paginator("list_secrets")
            .paginate(Filters=[{"Key": "name", "Values": [prefix]}])
        )
        owned: dict[str, dict[str, Any]] = {}
        try:
            for page in pages:
                for secret in page.get("SecretList", []):
                    tags = {t["Key"]: t["Value"] for t in secret.get("Tags", [])}
                    if secret["Name"].startswith(prefix) and self.names.owns(tags):
                        owned[secret["Name"].removeprefix(prefix)] = secret
        except aws.ERRORS as exc:
            raise aws.translate("secretsmanager", "ListSecrets", exc, what=prefix) from exc
        return owned

    def _secrets(self) -> list[Action]:
        owned = self._owned_secrets()
        actions = []
        for key, value in sorted(self.secrets.items()):
            name = self.names.secret(key)
            if key not in owned:
                create = self._later(
                    "secretsmanager", "CreateSecret", name, Name=name,
                    SecretString=value,
                    Tags=[{"Key": k, "Value": v} for k, v in self.tags.items()],
                )  # fmt: skip
                actions.append(Action("secretsmanager", "create secret", name, create))
                continue
            stored = self._call("secretsmanager", "GetSecretValue", name,
                                SecretId=name)  # fmt: skip
            if stored.get("SecretString") != value:
                update = self._later(
                    "secretsmanager", "PutSecretValue", name,
                    SecretId=name, SecretString=value,
                )  # fmt: skip
                actions.append(
                    Action("secretsmanager", "update secret (its value changed)", name, update)
                )
        for key in sorted(set(owned) - set(self.secrets)):
            actions.append(self._delete_secret(key, "no longer in the env file"))
        return actions

    def secret_arns(self) -> dict[str, str]:
        """The env file's keys → their secrets' ARNs (after ``ensure``), for task definitions."""
        owned = self._owned_secrets()
        return {key: owned[key]["ARN"] for key in sorted(self.secrets) if key in owned}

    def execution_role_arn(self) -> str:
        name = self.names.execution_role
        role = self._call("iam", "GetRole", name, RoleName=name)
        arn: str = role["Role"]["Arn"]
        return arn

    def _delete_secret(self, key: str, why: str) -> Action:
        name = self.names.secret(key)
        delete = self._later(
            "secretsmanager", "DeleteSecret", name,
            SecretId=name, ForceDeleteWithoutRecovery=True,
        )  # fmt: skip
        return Action("secretsmanager", f"delete secret ({why})", name, delete)

    def _config_error(self, key: str, message: str) -> ConfigError:
        return ConfigError.at(self.config_file, f"providers.aws.{key}", message)

    def _target_group_arn(self, slot: str) -> str | None:
        name = self.names.target_group(slot)
        found = self.clients.find(
            "elbv2", "DescribeTargetGroups", name, missing="TargetGroupNotFound", Names=[name]
        )
        if found is None:
            return None
        arn: str = found["TargetGroups"][0]["TargetGroupArn"]
        return arn

    def target_groups(self) -> dict[str, str]:
        """Each slot's target group ARN (after ``ensure``)."""
        return {slot: arn for slot in SLOTS if (arn := self._target_group_arn(slot)) is not None}

    def _target_groups(self) -> list[Action]:
        missing = [slot for slot in SLOTS if self._target_group_arn(slot) is None]
        return [
            Action(
                "elbv2", f"create target group of slot {slot} (port {self.port}, health "
                f"{self.health_path})", self.names.target_group(slot),
                functools.partial(self._create_target_group, slot),
            )
            for slot in missing
        ]  # fmt: skip

    def _create_target_group(self, slot: str) -> None:
        name = self.names.target_group(slot)
        vpc = self.network.required_vpc()  # created by an earlier action on a first deploy
        self._call(
            "elbv2", "CreateTargetGroup", name,
            Name=name, Protocol="HTTP", Port=self.port,
            VpcId=vpc, TargetType="ip", HealthCheckPath=self.health_path,
            HealthCheckIntervalSeconds=10, HealthyThresholdCount=2,
            UnhealthyThresholdCount=3, Matcher={"HttpCode": "200"},
            Tags=[{"Key": k, "Value": v} for k, v in self.tags.items()],
        )  # fmt: skip

    def _balancer(self) -> dict[str, Any] | None:
        name = self.names.load_balancer
        found = self.clients.find(
            "elbv2", "DescribeLoadBalancers", name, missing="LoadBalancerNotFound", Names=[name]
        )
        if found is None:
            return None
        balancer: dict[str, Any] = found["LoadBalancers"][0]
        return balancer

    def listener(self) -> str | None:
        """The ARN of the listener the switch moves (after ``ensure``)."""
        if self.settings.listener_arn is not None:
            return self.settings.listener_arn
        balancer = self._balancer()
        if balancer is None:
            return None
        found = self._call("elbv2", "DescribeListeners", self.names.load_balancer,
                           LoadBalancerArn=balancer["LoadBalancerArn"])  # fmt: skip
        listeners = found.get("Listeners", [])
        arns = [item["ListenerArn"] for item in listeners if item.get("Port") == _HTTP]
        return arns[0] if arns else None

    def _load_balancer(self) -> list[Action]:
        if self.settings.listener_arn is not None:
            arn = self.settings.listener_arn
            listeners = self.clients.find(
                "elbv2", "DescribeListeners", arn, missing="ListenerNotFound", ListenerArns=[arn]
            )
            if listeners is None:
                raise self._config_error("listener_arn", f"no listener {arn}")
            return []
        name = self.names.load_balancer
        balancer = self._balancer()
        if balancer is not None and self.listener() is not None:
            return []

        def create() -> None:
            found = balancer or self._call(
                "elbv2", "CreateLoadBalancer", name, Name=name, Subnets=self.network.subnets(),
                SecurityGroups=self.network.security_groups("load-balancer"),
                Scheme="internet-facing",
                Type="application", Tags=[{"Key": k, "Value": v} for k, v in self.tags.items()],
            )["LoadBalancers"][0]  # fmt: skip
            groups = self.target_groups()
            self._call(
                "elbv2", "CreateListener", name, LoadBalancerArn=found["LoadBalancerArn"],
                Protocol="HTTP", Port=_HTTP, DefaultActions=[{
                    "Type": "forward", "ForwardConfig": {"TargetGroups": [
                        {"TargetGroupArn": groups[slot], "Weight": 100 if slot == SLOTS[0] else 0}
                        for slot in SLOTS
                    ]},
                }],
            )  # fmt: skip

        what = "create load balancer and its HTTP listener" if balancer is None else (
            "create the HTTP listener of load balancer"
        )  # fmt: skip
        return [Action("elbv2", what, name, create)]

    # -- destroy ------------------------------------------------------------------------------------
    def removal(self) -> list[Action]:
        """What ``remove`` would delete: the resources tagged as this environment's."""
        actions = [self._delete_secret(key, "destroy") for key in sorted(self._owned_secrets())]
        actions += self._remove_role() + self._remove_log_group()
        actions += self._remove_load_balancer() + self._remove_target_groups()
        actions += self._remove_cluster() + self._remove_repository()
        return actions

    def remove(self) -> list[Action]:
        return carry_out(self.removal())

    def _remove_role(self) -> list[Action]:
        name = self.names.execution_role
        tags = self.clients.find("iam", "ListRoleTags", name, missing="NoSuchEntity", RoleName=name)
        if tags is None:
            return []
        if not self.names.owns({t["Key"]: t["Value"] for t in tags.get("Tags", [])}):
            return []

        def delete() -> None:
            self._call("iam", "DeleteRolePolicy", name,
                       RoleName=name, PolicyName=_SECRETS_POLICY)  # fmt: skip
            self._call("iam", "DetachRolePolicy", name,
                       RoleName=name, PolicyArn=EXECUTION_POLICY)  # fmt: skip
            self._call("iam", "DeleteRole", name, RoleName=name)

        return [Action("iam", "delete task execution role", name, delete)]

    def _remove_log_group(self) -> list[Action]:
        name = self.names.log_group
        found = self._call("logs", "DescribeLogGroups", name, logGroupNamePrefix=name)
        group = next((g for g in found.get("logGroups", []) if g["logGroupName"] == name), None)
        if group is None:
            return []
        arn = group["arn"].removesuffix(":*")
        tags = self._call("logs", "ListTagsForResource", name,
                          resourceArn=arn).get("tags", {})  # fmt: skip
        if not self.names.owns(tags):
            return []
        delete = self._later("logs", "DeleteLogGroup", name, logGroupName=name)
        return [Action("logs", "delete log group", name, delete)]

    def _remove_cluster(self) -> list[Action]:
        if self.settings.cluster is not None:
            return []  # the operator's own cluster
        name = self.names.cluster
        found = self._call("ecs", "DescribeClusters", name,
                           clusters=[name], include=["TAGS"])  # fmt: skip
        for cluster in found.get("clusters", []):
            tags = {t["key"]: t["value"] for t in cluster.get("tags", [])}
            if cluster.get("status") == "ACTIVE" and self.names.owns(tags):
                delete = self._later("ecs", "DeleteCluster", name, cluster=name)
                return [Action("ecs", "delete cluster", name, delete)]
        return []

    def _remove_repository(self) -> list[Action]:
        name = self.names.repository
        found = self._find_repository()
        if found is None:
            return []
        arn = found["repositories"][0]["repositoryArn"]
        tags = self._call("ecr", "ListTagsForResource", name,
                          resourceArn=arn).get("tags", [])  # fmt: skip
        if not self.names.owns({t["Key"]: t["Value"] for t in tags}):
            return []
        delete = self._later("ecr", "DeleteRepository", name, repositoryName=name, force=True)
        return [Action("ecr", "delete repository (and its images)", name, delete)]

    def _elb_owned(self, arn: str) -> bool:
        found = self._call("elbv2", "DescribeTags", arn, ResourceArns=[arn])
        tags = found["TagDescriptions"][0].get("Tags", []) if found["TagDescriptions"] else []
        return self.names.owns({t["Key"]: t["Value"] for t in tags})

    def _remove_load_balancer(self) -> list[Action]:
        balancer = None if self.settings.listener_arn else self._balancer()
        if balancer is None or not self._elb_owned(balancer["LoadBalancerArn"]):
            return []
        name, arn = self.names.load_balancer, balancer["LoadBalancerArn"]
        delete = self._later("elbv2", "DeleteLoadBalancer", name, LoadBalancerArn=arn)
        return [Action("elbv2", "delete load balancer (and its listeners)", name, delete)]

    def _remove_target_groups(self) -> list[Action]:
        actions = []
        for slot, arn in self.target_groups().items():
            if self._elb_owned(arn):
                name = self.names.target_group(slot)
                delete = self._later("elbv2", "DeleteTargetGroup", name, TargetGroupArn=arn)
                actions.append(Action("elbv2", f"delete target group of slot {slot}", name, delete))
        return actions
