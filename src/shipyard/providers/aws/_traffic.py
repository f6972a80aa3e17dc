"""Blue-green on AWS, driven by shipyard: two ECS services (``<stem>-blue``, ``<stem>-green``),
each behind its own ALB target group, and the listener forwarding to one of them.

A release goes to the idle slot's service (``deploy_slot``: its new task definition revision
and the desired count), which must finish its ECS deployment (``wait_deployed``: the rollout
completes, or ECS's circuit breaker fails it) and have every registered target healthy in its
target group (``wait_healthy``: a target that ALB calls unhealthy ends the wait at once). Only
then does the listener's forward action move all weight to it (``switch``: one
``ModifyListener``, weights 100/0, so the old slot stays registered and warm for a switch back).
``live_slot`` reads the listener: it is the only record of what serves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shipyard.errors import DeployFailed
from shipyard.providers.aws._infrastructure import Clients
from shipyard.providers.aws._settings import AwsNames, Network
from shipyard.providers.aws._tasks import CONTAINER
from shipyard.waiting import Clock, Interval, wait_until

SLOTS = ("blue", "green")
POLL = Interval(2.0, 1.5, 15.0)  # between describes: soon at first, then at most every 15 s


@dataclass(frozen=True)
class Health:
    """A target group's targets by state."""

    healthy: int
    unhealthy: list[str]  # "target: reason"
    other: int  # initial, draining, unused

    @property
    def settled(self) -> bool:
        return bool(self.unhealthy) or (self.healthy > 0 and self.other == 0)


class AwsTraffic:
    """The listener and the two slots' services and target groups of one environment."""

    def __init__(
        self,
        names: AwsNames,
        cluster: str,
        listener_arn: str,
        target_groups: dict[str, str],  # slot → target group ARN
        clients: Clients,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.names = names
        self.cluster = cluster
        self.listener_arn = listener_arn
        self.target_groups = target_groups
        self.clients = clients
        self.clock = clock or Clock()

    def _call(self, api: str, action: str, what: str, /, **params: Any) -> Any:
        return self.clients.call(api, action, what, **params)

    # -- what serves ---------------------------------------------------------------------------
    def weights(self) -> dict[str, int]:
        """Each slot's share of the listener's traffic (slots it does not forward to: 0)."""
        found = self._call("elbv2", "DescribeListeners", self.listener_arn,
                           ListenerArns=[self.listener_arn])  # fmt: skip
        actions = found["Listeners"][0].get("DefaultActions", [])
        by_arn: dict[str, int] = {}
        for action in actions:
            if action.get("Type") != "forward":
                continue
            groups = action.get("ForwardConfig", {}).get("TargetGroups")
            if groups:
                by_arn.update({g["TargetGroupArn"]: int(g.get("Weight", 1)) for g in groups})
            elif action.get("TargetGroupArn"):
                by_arn[action["TargetGroupArn"]] = 1
        return {slot: by_arn.get(arn, 0) for slot, arn in self.target_groups.items()}

    def live_slot(self) -> str | None:
        """The slot that takes all the traffic (``None``: none does, or it is split)."""
        weights = self.weights()
        live = [slot for slot, weight in weights.items() if weight > 0]
        return live[0] if len(live) == 1 else None

    def switch(self, slot: str) -> str:
        """Forward every request to ``slot``; the other stays registered (weight 0)."""
        groups = [
            {"TargetGroupArn": arn, "Weight": 100 if name == slot else 0}
            for name, arn in self.target_groups.items()
        ]
        self._call(
            "elbv2", "ModifyListener", self.listener_arn,
            ListenerArn=self.listener_arn,
            DefaultActions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": groups}}],
        )  # fmt: skip
        return f"the listener forwards to {slot} ({self.names.target_group(slot)})"

    # -- the slots' services ------------------------------------------------------------------------
    def missing_services(self) -> list[str]:
        """The slots whose ECS service does not exist (or is being deleted)."""
        names = [self.names.service(slot) for slot in SLOTS]
        found = self._call("ecs", "DescribeServices", ", ".join(names),
                           cluster=self.cluster, services=names)  # fmt: skip
        active = {
            s["serviceName"] for s in found.get("services", []) if s.get("status") == "ACTIVE"
        }
        return [slot for slot in SLOTS if self.names.service(slot) not in active]

    def create_service(
        self, slot: str, task_definition: str, *, port: int, network: Network, desired: int
    ) -> str:
        """``slot``'s service: Fargate tasks of ``task_definition`` registered in the slot's
        target group, ECS's circuit breaker on (a deployment whose tasks keep failing is rolled
        back and reported failed), tags propagated to the tasks."""
        service = self.names.service(slot)
        self._call(
            "ecs", "CreateService", service,
            cluster=self.cluster, serviceName=service, taskDefinition=task_definition,
            desiredCount=desired, launchType="FARGATE",
            loadBalancers=[{
                "targetGroupArn": self.target_groups[slot], "containerName": CONTAINER,
                "containerPort": port,
            }],
            networkConfiguration={"awsvpcConfiguration": {
                "subnets": list(network.subnets),
                "securityGroups": list(network.security_groups),
                "assignPublicIp": "ENABLED" if network.public_ip else "DISABLED",
            }},
            deploymentConfiguration={
                "deploymentCircuitBreaker": {"enable": True, "rollback": True},
                "minimumHealthyPercent": 100, "maximumPercent": 200,
            },
            healthCheckGracePeriodSeconds=60, propagateTags="SERVICE",
            tags=[{"key": k, "value": v} for k, v in self.names.tags({}).items()],
        )  # fmt: skip
        return f"{service} created ({desired} task(s))"

    def remove_services(self) -> list[str]:
        """Delete the slots' services shipyard created (scaled to 0 first, as ECS asks)."""
        return remove_services(self.names, self.cluster, self.clients)

    # -- a slot's release ------------------------------------------------------------------------
    def deploy_slot(self, slot: str, task_definition: str, desired: int) -> None:
        """Run ``task_definition`` in ``slot``'s service, ``desired`` tasks."""
        service = self.names.service(slot)
        self._call(
            "ecs", "UpdateService", service,
            cluster=self.cluster, service=service, taskDefinition=task_definition,
            desiredCount=desired, forceNewDeployment=True,
        )  # fmt: skip

    def wait_deployed(self, slot: str, timeout: float) -> str:
        """Wait for ``slot``'s newest ECS deployment to complete; ``DeployFailed`` when ECS
        fails it (its circuit breaker rolled it back) or it does not complete in time."""
        service = self.names.service(slot)

        def primary() -> dict[str, Any]:
            found = self._call("ecs", "DescribeServices", service,
                               cluster=self.cluster, services=[service])  # fmt: skip
            deployments = (found.get("services") or [{}])[0].get("deployments", [])
            newest: dict[str, Any] = next(
                (d for d in deployments if d.get("status") == "PRIMARY"), {}
            )
            return newest

        ended = wait_until(
            primary, timeout=timeout, interval=POLL, clock=self.clock,
            done=lambda d: d.get("rolloutState") in ("COMPLETED", "FAILED"),
        )  # fmt: skip
        if ended is None:
            raise DeployFailed(
                "start", f"{service}: its ECS deployment did not complete within {timeout:g}s",
                hint="the previous version kept serving; see the service's events",
            )  # fmt: skip
        if ended.get("rolloutState") == "FAILED":
            reason = ended.get("rolloutStateReason") or "no reason given"
            raise DeployFailed(
                "start", f"{service}: ECS failed its deployment: {reason}",
                hint="the previous version kept serving; fix the app and deploy again",
            )  # fmt: skip
        return f"{service}: {ended.get('runningCount', '?')} task(s) running"

    def health(self, slot: str) -> Health:
        group = self.target_groups[slot]
        found = self._call("elbv2", "DescribeTargetHealth",
                           self.names.target_group(slot), TargetGroupArn=group)  # fmt: skip
        healthy, other, unhealthy = 0, 0, []
        for item in found.get("TargetHealthDescriptions", []):
            state = item.get("TargetHealth", {})
            if state.get("State") == "healthy":
                healthy += 1
            elif state.get("State") == "unhealthy":
                target = item.get("Target", {})
                where = f"{target.get('Id', '?')}:{target.get('Port', '?')}"
                unhealthy.append(f"{where}: {state.get('Description') or state.get('Reason')}")
            else:
                other += 1
        return Health(healthy, unhealthy, other)

    def wait_healthy(self, slot: str, timeout: float) -> str:
        """Wait until every target of ``slot``'s group is healthy; ``DeployFailed`` at the
        first unhealthy one, or when they are not all healthy in time."""
        health = wait_until(
            lambda: self.health(slot), timeout=timeout, interval=POLL, clock=self.clock,
            done=lambda h: h.settled,
        )  # fmt: skip
        group = self.names.target_group(slot)
        if health is None:
            raise DeployFailed(
                "health", f"{group}: its targets were not all healthy within {timeout:g}s",
                hint="the previous version kept serving",
            )  # fmt: skip
        if health.unhealthy:
            raise DeployFailed(
                "health", f"{group}: the load balancer calls targets unhealthy: "
                + "; ".join(health.unhealthy),
                hint="the previous version kept serving; fix the app and deploy again",
            )  # fmt: skip
        return f"{group}: {health.healthy} healthy target(s)"


def remove_services(names: AwsNames, cluster: str, clients: Clients) -> list[str]:
    """Delete the slots' services that are this environment's (by their tags): scaled to 0,
    then deleted (their tasks stop). Needs neither the listener nor the target groups."""
    wanted = [names.service(slot) for slot in SLOTS]
    found = clients.find("ecs", "DescribeServices", ", ".join(wanted), missing="ClusterNotFoundException",
                         cluster=cluster, services=wanted, include=["TAGS"])  # fmt: skip
    removed = []
    for service in (found or {}).get("services", []):
        tags = {t["key"]: t["value"] for t in service.get("tags", [])}
        if service.get("status") != "ACTIVE" or not names.owns(tags):
            continue
        name = service["serviceName"]
        clients.call("ecs", "UpdateService", name, cluster=cluster, service=name, desiredCount=0)
        clients.call("ecs", "DeleteService", name, cluster=cluster, service=name, force=True)
        removed.append(f"ECS service {name}")
    return removed
