"""Where an AWS environment's load balancer, tasks and database run, and who may reach them.

The subnets are the operator's (``providers.aws.subnets``: two or more, in one VPC) or, when none
are given, a minimal VPC shipyard creates: ``10.0.0.0/16`` with DNS host names, an internet
gateway and the main route table's default route to it, and a public subnet in each of the
region's first two availability zones. There is no NAT gateway (it costs by the hour), so the
tasks there get public addresses to pull their images; the security groups below still admit
nothing to them but the load balancer.

The security groups are the operator's (``providers.aws.security_groups``, with their subnets)
or three shipyard creates in the VPC, each open only as far as it must be: the load balancer's
(HTTP from anywhere), the tasks' (the app's port from the load balancer) and the database's
(PostgreSQL from the tasks). Everything created is tagged ``shipyard:app``/``shipyard:env``;
``plan`` reads only, each action finds what it builds on when it runs (so a plan can list the
subnets of a VPC not created yet), and ``removal`` deletes only what carries this environment's
tags, dependents first, waiting out the network interfaces AWS releases minutes after a load
balancer or a task is gone.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shipyard import aws
from shipyard.errors import ConfigError, ShipyardError
from shipyard.providers._actions import Action, carry_out
from shipyard.providers.aws._infrastructure import Clients
from shipyard.providers.aws._settings import TAG_APP, TAG_ENV, AwsNames, AwsSettings, Network
from shipyard.waiting import Clock, Interval, wait_until

VPC_CIDR = "10.0.0.0/16"
SUBNET_CIDRS = ("10.0.0.0/20", "10.0.16.0/20")
_ANYWHERE = "0.0.0.0/0"
_HTTP, _POSTGRES = 80, 5432
_RELEASED = Interval(5.0, 1.5, 30.0)  # network interfaces linger for minutes
RELEASE_TIMEOUT = 900.0


@dataclass(frozen=True)
class _Group:
    """A security group shipyard creates: its role, who may reach it and on which port."""

    role: str
    purpose: str
    port: int
    source: str | None  # the role of the group allowed in; None: anywhere

    def admits(self, sources: dict[str, list[str]]) -> dict[str, Any]:
        """The ingress permission, the source groups named by their ids."""
        permission: dict[str, Any] = {
            "IpProtocol": "tcp",
            "FromPort": self.port,
            "ToPort": self.port,
        }
        if self.source is None:
            permission["IpRanges"] = [{"CidrIp": _ANYWHERE, "Description": "anywhere"}]
        else:
            permission["UserIdGroupPairs"] = [
                {"GroupId": group, "Description": f"the {self.source}"}
                for group in sources[self.source]
            ]
        return permission


class AwsNetwork:
    """The environment's subnets and security groups (see the module)."""

    def __init__(
        self,
        names: AwsNames,
        settings: AwsSettings,
        clients: Clients,
        *,
        port: int,
        database: bool,
        config_file: str = "shipyard.yml",
        clock: Clock | None = None,
    ) -> None:
        self.names = names
        self.settings = settings
        self.clients = clients
        self.config_file = config_file
        self.clock = clock or Clock()
        self.tags = names.tags(settings.tags)
        # An existing listener's load balancer keeps its own security groups.
        self.groups = [] if settings.listener_arn else [
            _Group("load-balancer", "HTTP from anywhere", _HTTP, None),
        ]  # fmt: skip
        self.groups.append(
            _Group("tasks", f"port {port} from the load balancer", port, "load-balancer")
        )
        if database:
            self.groups.append(_Group("database", "PostgreSQL from the tasks", _POSTGRES, "tasks"))

    @property
    def created(self) -> bool:
        """Whether the VPC is shipyard's (no subnets given)."""
        return not self.settings.subnets

    def _call(self, action: str, what: str, /, **params: Any) -> Any:
        return self.clients.call("ec2", action, what, **params)

    def _tagged(self, name: str, resource: str) -> list[dict[str, Any]]:
        tags = {"Name": name, **self.tags}
        return [
            {"ResourceType": resource, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ]

    def _mine(self) -> list[dict[str, Any]]:
        return [
            {"Name": f"tag:{TAG_APP}", "Values": [self.names.app]},
            {"Name": f"tag:{TAG_ENV}", "Values": [self.names.environment]},
        ]

    # -- what exists -----------------------------------------------------------------------------
    def vpc(self) -> str | None:
        """The VPC: the given subnets' (they must be in one), or the one shipyard created."""
        if self.settings.subnets:
            return self._given_vpc()
        found = self._call("DescribeVpcs", self.names.stem, Filters=self._mine())
        vpcs = sorted(v["VpcId"] for v in found.get("Vpcs", []))
        return vpcs[0] if vpcs else None

    def _given_vpc(self) -> str:
        subnets = self.settings.subnets
        found = self._call("DescribeSubnets", ", ".join(subnets), SubnetIds=subnets)
        vpcs: set[str] = {subnet["VpcId"] for subnet in found.get("Subnets", [])}
        if len(vpcs) != 1:
            raise ConfigError.at(
                self.config_file, "providers.aws.subnets",
                f"the subnets are in {len(vpcs)} VPCs, not one",
            )  # fmt: skip
        return vpcs.pop()

    def required_vpc(self) -> str:
        vpc = self.vpc()
        if vpc is None:
            raise ShipyardError(
                f"the VPC of {self.names.stem} is missing",
                hint="`shipyard plan` lists what the next deploy creates; deploy again",
            )
        return vpc

    def _subnets(self, vpc: str) -> list[dict[str, Any]]:
        found = self._call("DescribeSubnets", vpc,
                           Filters=[{"Name": "vpc-id", "Values": [vpc]}, *self._mine()])  # fmt: skip
        return sorted(found.get("Subnets", []), key=lambda s: str(s["CidrBlock"]))

    def subnets(self) -> list[str]:
        """The subnets the load balancer, the tasks and the database run in."""
        if self.settings.subnets:
            return list(self.settings.subnets)
        vpc = self.vpc()
        return [s["SubnetId"] for s in self._subnets(vpc)] if vpc else []

    def _group(self, role: str, vpc: str) -> dict[str, Any] | None:
        name = f"{self.names.stem}-{role}"
        found = self._call(
            "DescribeSecurityGroups", name,
            Filters=[{"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc]}],
        )  # fmt: skip
        groups: list[dict[str, Any]] = found.get("SecurityGroups", [])
        return groups[0] if groups else None

    def security_groups(self, role: str) -> list[str]:
        """The security groups of the load balancer, the tasks or the database."""
        if self.settings.security_groups:
            return list(self.settings.security_groups)
        vpc = self.vpc()
        group = self._group(role, vpc) if vpc else None
        return [group["GroupId"]] if group else []

    def tasks(self) -> Network:
        """Where the app's tasks and the one-off tasks run."""
        public = self.settings.assign_public_ip
        return Network(
            tuple(self.subnets()),
            tuple(self.security_groups("tasks")),
            public_ip=self.created if public is None else public,
        )

    # -- what a deploy needs ---------------------------------------------------------------------
    def plan(self) -> list[Action]:
        """Every change ``ensure`` would make, in order; reads only (and checks given subnets)."""
        vpc = self.vpc()
        actions = self._vpc_plan(vpc) if self.created else []
        if not self.settings.security_groups:
            actions += self._groups_plan(vpc)
        return actions

    def ensure(self) -> list[Action]:
        return carry_out(self.plan())

    def _vpc_plan(self, vpc: str | None) -> list[Action]:
        stem = self.names.stem
        actions = []
        if vpc is None:
            actions.append(Action("ec2", f"create VPC {VPC_CIDR}", stem, self._create_vpc))
        gateway = self._gateway()
        if gateway is None or not gateway.get("Attachments"):
            what = "create the internet gateway of VPC" if gateway is None else (
                "attach the internet gateway to VPC"
            )  # fmt: skip
            actions.append(Action("ec2", what, stem, self._attach_gateway))
        if vpc is None or not self._routed(vpc):
            actions.append(
                Action(
                    "ec2", f"route {_ANYWHERE} to the internet gateway in VPC", stem, self._route
                )
            )
        present = {s["CidrBlock"] for s in self._subnets(vpc)} if vpc else set()
        for cidr, zone in zip(SUBNET_CIDRS, self._zones(), strict=True):
            if cidr not in present:
                create = functools.partial(self._create_subnet, cidr, zone)
                actions.append(
                    Action(
                        "ec2", f"create public subnet {cidr} in {zone}", f"{stem}-{zone}", create
                    )
                )
        return actions

    def _zones(self) -> list[str]:
        """The region's first two availability zones (an ALB spans two)."""
        found = self._call("DescribeAvailabilityZones", self.settings.region)
        zones = sorted(
            z["ZoneName"]
            for z in found.get("AvailabilityZones", [])
            if z.get("State") == "available"
            and z.get("ZoneType", "availability-zone") == "availability-zone"
        )
        if len(zones) < len(SUBNET_CIDRS):
            raise ShipyardError(
                f"{self.settings.region} offers {len(zones)} availability zone(s): an ALB needs two",
                hint="give `providers.aws.subnets` in two zones, or use another region",
            )
        return zones[: len(SUBNET_CIDRS)]

    def _create_vpc(self) -> None:
        created = self._call("CreateVpc", self.names.stem, CidrBlock=VPC_CIDR,
                             TagSpecifications=self._tagged(self.names.stem, "vpc"))  # fmt: skip
        vpc = created["Vpc"]["VpcId"]
        # ECS and RDS want DNS names inside the VPC.
        self._call("ModifyVpcAttribute", vpc, VpcId=vpc, EnableDnsHostnames={"Value": True})

    def _gateway(self) -> dict[str, Any] | None:
        found = self._call("DescribeInternetGateways", self.names.stem, Filters=self._mine())
        gateways: list[dict[str, Any]] = found.get("InternetGateways", [])
        return gateways[0] if gateways else None

    def _attach_gateway(self) -> None:
        vpc = self.required_vpc()
        gateway = self._gateway() or self._call(
            "CreateInternetGateway", self.names.stem,
            TagSpecifications=self._tagged(self.names.stem, "internet-gateway"),
        )["InternetGateway"]  # fmt: skip
        if not gateway.get("Attachments"):
            self._call("AttachInternetGateway", gateway["InternetGatewayId"],
                       InternetGatewayId=gateway["InternetGatewayId"], VpcId=vpc)  # fmt: skip

    def _main_table(self, vpc: str) -> dict[str, Any]:
        found = self._call(
            "DescribeRouteTables", vpc,
            Filters=[{"Name": "vpc-id", "Values": [vpc]},
                     {"Name": "association.main", "Values": ["true"]}],
        )  # fmt: skip
        table: dict[str, Any] = found["RouteTables"][0]
        return table

    def _routed(self, vpc: str) -> bool:
        """Whether the main route table sends 0.0.0.0/0 to the VPC's gateway (a blackhole
        route left by a gateway deleted earlier does not count)."""
        gateway = self._gateway()
        return gateway is not None and any(
            route.get("DestinationCidrBlock") == _ANYWHERE
            and route.get("GatewayId") == gateway["InternetGatewayId"]
            and route.get("State", "active") == "active"
            for route in self._main_table(vpc).get("Routes", [])
        )

    def _route(self) -> None:
        vpc = self.required_vpc()
        gateway = self._gateway()
        if gateway is None:
            raise ShipyardError(f"the internet gateway of {self.names.stem} is missing")
        table = self._main_table(vpc)
        stale = any(r.get("DestinationCidrBlock") == _ANYWHERE for r in table.get("Routes", []))
        ident = table["RouteTableId"]
        self._call("ReplaceRoute" if stale else "CreateRoute", ident, RouteTableId=ident,
                   DestinationCidrBlock=_ANYWHERE, GatewayId=gateway["InternetGatewayId"])  # fmt: skip

    def _create_subnet(self, cidr: str, zone: str) -> None:
        vpc = self.required_vpc()
        name = f"{self.names.stem}-{zone}"
        created = self._call("CreateSubnet", name, VpcId=vpc, CidrBlock=cidr,
                             AvailabilityZone=zone, TagSpecifications=self._tagged(name, "subnet"))  # fmt: skip
        subnet = created["Subnet"]["SubnetId"]
        self._call("ModifySubnetAttribute", subnet, SubnetId=subnet,
                   MapPublicIpOnLaunch={"Value": True})  # fmt: skip

    def _groups_plan(self, vpc: str | None) -> list[Action]:
        found = {g.role: self._group(g.role, vpc) if vpc else None for g in self.groups}
        sources: dict[str, list[str]] | None = None  # read once, when a group exists
        actions = []
        for group in self.groups:
            name = f"{self.names.stem}-{group.role}"
            existing = found[group.role]
            if existing is None:
                create = functools.partial(self._create_group, group)
                actions.append(
                    Action("ec2", f"create security group ({group.purpose})", name, create)
                )
                continue
            sources = sources if sources is not None else self._sources_of(found)
            if not _admits(existing, group, sources):
                admit = functools.partial(self._admit, group, existing)
                actions.append(
                    Action("ec2", f"allow {group.purpose} in security group", name, admit)
                )
        return actions

    def _sources(self, vpc: str) -> dict[str, list[str]]:
        """Each role's security groups, as they are now (an earlier action may have made one)."""
        return self._sources_of({g.role: self._group(g.role, vpc) for g in self.groups})

    def _sources_of(self, found: dict[str, dict[str, Any] | None]) -> dict[str, list[str]]:
        sources = {role: [group["GroupId"]] if group else [] for role, group in found.items()}
        if self.settings.listener_arn:
            sources["load-balancer"] = self._listeners_groups(self.settings.listener_arn)
        return sources

    def _listeners_groups(self, listener: str) -> list[str]:
        """The security groups of the load balancer an existing listener belongs to."""
        found = self.clients.find("elbv2", "DescribeListeners", listener,
                                  missing="ListenerNotFound", ListenerArns=[listener])  # fmt: skip
        if found is None:
            raise ConfigError.at(
                self.config_file, "providers.aws.listener_arn", f"no listener {listener}"
            )
        balancer = found["Listeners"][0]["LoadBalancerArn"]
        described = self.clients.call(
            "elbv2", "DescribeLoadBalancers", balancer, LoadBalancerArns=[balancer]
        )
        return sorted(described["LoadBalancers"][0].get("SecurityGroups", []))

    def _create_group(self, group: _Group) -> None:
        vpc = self.required_vpc()
        name = f"{self.names.stem}-{group.role}"
        created = self._call(
            "CreateSecurityGroup", name, GroupName=name, VpcId=vpc,
            Description=f"shipyard {self.names.app} {self.names.environment}: {group.purpose}",
            TagSpecifications=self._tagged(name, "security-group"),
        )  # fmt: skip
        ingress = group.admits(self._sources(vpc))
        self._call("AuthorizeSecurityGroupIngress", name,
                   GroupId=created["GroupId"], IpPermissions=[ingress])  # fmt: skip

    def _admit(self, group: _Group, found: dict[str, Any]) -> None:
        name, vpc = f"{self.names.stem}-{group.role}", self.required_vpc()
        self._call("AuthorizeSecurityGroupIngress", name, GroupId=found["GroupId"],
                   IpPermissions=[group.admits(self._sources(vpc))])  # fmt: skip

    # -- destroy ---------------------------------------------------------------------------------
    def removal(self) -> list[Action]:
        """What ``remove`` deletes: the security groups shipyard created (dependents first),
        then the VPC's subnets, internet gateway and the VPC itself, if shipyard created it."""
        vpc = self.vpc()
        if vpc is None:
            return []
        actions = []
        if not self.settings.security_groups:
            for group in reversed(self.groups):
                found = self._group(group.role, vpc)
                if found is not None and self.names.owns(_tags(found)):
                    name = f"{self.names.stem}-{group.role}"
                    delete = self._later("DeleteSecurityGroup", name, GroupId=found["GroupId"])
                    actions.append(Action("ec2", "delete security group", name, delete))
        if not self.created:
            return actions
        for subnet in self._subnets(vpc):
            name = _tags(subnet).get("Name", subnet["SubnetId"])
            delete = self._later("DeleteSubnet", name, SubnetId=subnet["SubnetId"])
            actions.append(Action("ec2", f"delete subnet {subnet['CidrBlock']}", name, delete))
        gateway = self._gateway()
        if gateway is not None:
            delete_gateway = functools.partial(self._delete_gateway, gateway)
            actions.append(
                Action("ec2", "delete the internet gateway of VPC", self.names.stem, delete_gateway)
            )
        delete_vpc = self._later("DeleteVpc", self.names.stem, VpcId=vpc)
        actions.append(Action("ec2", f"delete VPC {vpc}", self.names.stem, delete_vpc))
        return actions

    def remove(self) -> list[Action]:
        return carry_out(self.removal())

    def _delete_gateway(self, gateway: dict[str, Any]) -> None:
        ident = gateway["InternetGatewayId"]
        for attachment in gateway.get("Attachments", []):
            self._call("DetachInternetGateway", ident,
                       InternetGatewayId=ident, VpcId=attachment["VpcId"])  # fmt: skip
        self._call("DeleteInternetGateway", ident, InternetGatewayId=ident)

    def _later(self, action: str, what: str, /, **params: Any) -> Callable[[], Any]:
        """The call, made when the action runs, and made again while AWS still counts the
        network interfaces of a deleted load balancer or stopped task (``DependencyViolation``)."""
        call = self.clients.later("ec2", action, what, **params)

        def attempt() -> bool:
            try:
                call()
            except aws.AwsError as exc:
                if exc.code != "DependencyViolation":
                    raise
                return False
            return True

        def run() -> None:
            if not wait_until(
                attempt, timeout=RELEASE_TIMEOUT, interval=_RELEASED, clock=self.clock
            ):
                raise ShipyardError(
                    f"AWS ec2 {action} {what}: still in use after {RELEASE_TIMEOUT:g}s",
                    hint="AWS releases a deleted load balancer's or task's network interfaces "
                    "over minutes: run `shipyard destroy` again later",
                )

        return run


def _admits(found: dict[str, Any], group: _Group, sources: dict[str, list[str]]) -> bool:
    """Whether ``found`` admits what ``group`` should. A rule it no longer needs (the app's
    former port) is left: the tasks still serving use it until the switch."""
    wanted = _permission(group.admits(sources))
    return wanted in [_permission(p) for p in found.get("IpPermissions", [])]


def _tags(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def _permission(permission: dict[str, Any]) -> tuple[Any, ...]:
    """An ingress permission as a comparable value (descriptions and AWS's own keys aside)."""
    return (
        permission.get("IpProtocol"),
        permission.get("FromPort"),
        permission.get("ToPort"),
        tuple(sorted(r["CidrIp"] for r in permission.get("IpRanges", []))),
        tuple(sorted(p["GroupId"] for p in permission.get("UserIdGroupPairs", []))),
    )
