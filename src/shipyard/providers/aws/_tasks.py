"""The app's ECS task definition: what a release runs on Fargate, one revision per release.

The container runs the release's image with the app's non-secret environment (``app.env``) as
plain values and every env-file value as a reference to its Secrets Manager secret (ECS reads
it at start with the task execution role): a secret's value is never part of a task
definition. Logs go to the environment's CloudWatch log group. ``changes`` says what a new
revision changes from the latest one (``plan``'s task definition diff); ``register`` records a
new revision; ``revisions`` lists them newest first (a rollback's way back without a build).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shipyard import aws
from shipyard.providers.aws._infrastructure import Clients
from shipyard.providers.aws._settings import AwsNames, AwsSettings

CONTAINER = "app"


@dataclass(frozen=True)
class TaskSpec:
    """What one release's task definition is made from."""

    image: str
    port: int
    version: str
    commit: str
    release_id: str
    execution_role_arn: str
    env: Mapping[str, str] = field(default_factory=dict)  # plain values (app.env)
    secret_arns: Mapping[str, str] = field(default_factory=dict)  # env var → secret ARN


class TaskDefinitions:
    """The environment's task definition family."""

    def __init__(
        self,
        names: AwsNames,
        settings: AwsSettings,
        clients: Clients,
        *,
        family: str | None = None,
    ) -> None:
        self.names = names
        self.settings = settings
        self.clients = clients
        self.family = family or names.family  # one-off tasks have families of their own

    def _call(self, action: str, /, **params: Any) -> Any:
        return self.clients.call("ecs", action, self.family, **params)

    def render(self, spec: TaskSpec) -> dict[str, Any]:
        """The ``RegisterTaskDefinition`` request for ``spec``."""
        labels = {
            "org.shipyard.app": self.names.app,
            "org.shipyard.environment": self.names.environment,
            "org.shipyard.release": spec.release_id,
            "org.opencontainers.image.version": spec.version,
            "org.opencontainers.image.revision": spec.commit,
        }
        container = {
            "name": CONTAINER,
            "image": spec.image,
            "essential": True,
            "memory": self.settings.memory,  # the task's whole, as its hard limit
            "portMappings": [{"containerPort": spec.port, "protocol": "tcp"}] if spec.port else [],
            "environment": [{"name": k, "value": v} for k, v in sorted(spec.env.items())],
            "secrets": [{"name": k, "valueFrom": v} for k, v in sorted(spec.secret_arns.items())],
            "dockerLabels": labels,
            "stopTimeout": 30,
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {
                    "awslogs-group": self.names.log_group,
                    "awslogs-region": self.settings.region,
                    "awslogs-stream-prefix": "app",
                },
            },
        }
        tags = self.names.tags({**self.settings.tags, "shipyard:release": spec.release_id})
        return {
            "family": self.family,
            "requiresCompatibilities": ["FARGATE"],
            "networkMode": "awsvpc",
            "cpu": str(self.settings.cpu),
            "memory": str(self.settings.memory),
            "executionRoleArn": spec.execution_role_arn,
            "runtimePlatform": {"operatingSystemFamily": "LINUX", "cpuArchitecture": "X86_64"},
            "containerDefinitions": [container],
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
        }

    def latest(self) -> dict[str, Any] | None:
        """The newest active revision, described; ``None`` before the first."""
        arns = self.revisions()
        if not arns:
            return None
        found = self._call("DescribeTaskDefinition",
                           taskDefinition=arns[0])  # fmt: skip
        described: dict[str, Any] = found["taskDefinition"]
        return described

    def revisions(self) -> list[str]:
        """The family's active revisions' ARNs, newest first."""
        pages = (
            self.clients["ecs"]
            .get_paginator("list_task_definitions")
            .paginate(familyPrefix=self.family, status="ACTIVE", sort="DESC")
        )
        try:
            arns = [arn for page in pages for arn in page.get("taskDefinitionArns", [])]
        except aws.ERRORS as exc:
            raise aws.translate("ecs", "ListTaskDefinitions", exc, what=self.family) from exc
        # Only this family's (the prefix matches longer names too), by revision number,
        # whatever order the pages came in (an ARN ends ``family:N``).
        mine = [arn for arn in arns if arn.rsplit("/", 1)[-1].rsplit(":", 1)[0] == self.family]
        return sorted(mine, key=lambda arn: int(arn.rsplit(":", 1)[1]), reverse=True)

    def changes(self, spec: TaskSpec) -> list[str]:
        """What a revision for ``spec`` changes from the latest (names of secrets, never their
        values); everything for the first."""
        wanted = _essentials(self.render(spec))
        latest = self.latest()
        if latest is None:
            return [f"{self.family}: first revision ({wanted['image']})"]
        found = _essentials(latest)
        lines = []
        for key in wanted:
            if wanted[key] != found.get(key):
                lines.append(f"{key}: {_show(found.get(key))} → {_show(wanted[key])}")
        return lines

    def of_release(self, release_id: str) -> str | None:
        """The active revision registered for ``release_id`` (its ``org.shipyard.release``
        label), newest first; ``None`` when there is none."""
        for arn in self.revisions():
            found = self._call("DescribeTaskDefinition", taskDefinition=arn)
            container = found["taskDefinition"]["containerDefinitions"][0]
            if container.get("dockerLabels", {}).get("org.shipyard.release") == release_id:
                return arn
        return None

    def labels(self, arn: str) -> dict[str, str]:
        """The labels of revision ``arn``'s container (its release, version, commit)."""
        found = self._call("DescribeTaskDefinition", taskDefinition=arn)
        labels: dict[str, str] = found["taskDefinition"]["containerDefinitions"][0].get(
            "dockerLabels", {}
        )
        return labels

    def deregister(self, arn: str) -> None:
        self._call("DeregisterTaskDefinition", taskDefinition=arn)

    def deregister_all(self) -> list[str]:
        """Deregister every active revision of the family (destroy); their ARNs."""
        arns = self.revisions()
        for arn in arns:
            self._call("DeregisterTaskDefinition", taskDefinition=arn)
        return arns

    def register(self, spec: TaskSpec) -> str:
        """Register ``spec``'s revision; its ARN."""
        answer = self._call("RegisterTaskDefinition", **self.render(spec))
        arn: str = answer["taskDefinition"]["taskDefinitionArn"]
        return arn


def _essentials(definition: Mapping[str, Any]) -> dict[str, Any]:
    """What a revision is compared by (what ECS adds when it describes one left out)."""
    container = definition["containerDefinitions"][0]
    return {
        "image": container.get("image"),
        "cpu": str(definition.get("cpu")),
        "memory": str(definition.get("memory")),
        "port": [m.get("containerPort") for m in container.get("portMappings", [])],
        "environment": {e["name"]: e["value"] for e in container.get("environment", [])},
        "secrets": {s["name"]: s["valueFrom"] for s in container.get("secrets", [])},
        "execution role": definition.get("executionRoleArn"),
    }


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={v}" for k, v in sorted(value.items())) + "}"
    return str(value)
