"""An AWS environment's settings (``providers.aws``) and the names of what shipyard creates."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# The retention periods CloudWatch Logs accepts (PutRetentionPolicy).
RetentionDays = Literal[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
    2922, 3288, 3653,
]  # fmt: skip


class RdsSettings(BaseModel):
    """``providers.aws.rds``: the RDS for PostgreSQL instance shipyard creates for the environment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine_version: str = Field("17", description="PostgreSQL's major (or major.minor) version.")
    instance_class: str = Field("db.t4g.micro", description="The instance class.")
    storage_gb: int = Field(20, ge=20, le=65536, description="Allocated storage (gp3), GiB.")
    multi_az: bool = Field(False, description="A standby in a second availability zone.")
    backup_retention_days: int = Field(
        7, ge=1, le=35, description="Days RDS keeps its automated backups."
    )
    deletion_protection: bool = Field(
        True, description="RDS refuses to delete the instance until this is turned off."
    )


class AwsSettings(BaseModel):
    """``providers.aws``: where and how an environment runs on AWS."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    region: str = Field(description="The AWS region (the target's aws://<region>).")
    endpoint_url: str | None = Field(
        None,
        description="An endpoint speaking the AWS APIs instead of AWS's own (LocalStack, a test stand-in).",
    )
    state_bucket: str = Field(
        description="The S3 bucket holding the environment's state and lock (it must exist)."
    )
    cluster: str | None = Field(
        None,
        description="An existing ECS cluster to run in (default: shipyard creates shipyard-<app>-<environment>).",
    )
    log_retention_days: RetentionDays = Field(
        30, description="How long CloudWatch Logs keeps the app's log lines."
    )
    tags: dict[str, str] = Field(
        default_factory=dict,
        description="Tags on every resource shipyard creates, beside shipyard:app and shipyard:env.",
    )
    subnets: list[str] = Field(
        default_factory=list,
        description="The VPC subnets the load balancer and the app's tasks run in (two availability zones at least).",
    )
    security_groups: list[str] = Field(
        default_factory=list, description="Security groups of the load balancer and the tasks."
    )
    listener_arn: str | None = Field(
        None,
        description="An existing ALB listener to switch (default: shipyard creates an ALB with an HTTP listener).",
    )
    rds: RdsSettings | None = Field(
        None,
        description="The RDS instance shipyard creates (default: none; the env file's DATABASE_URL names an existing database).",
    )
    cpu: int = Field(256, description="The app task's CPU units (Fargate: 256 = 0.25 vCPU).")
    memory: int = Field(
        512, description="The app task's memory in MiB (a size Fargate offers for `cpu`)."
    )

    @property
    def network(self) -> Network:
        return Network(tuple(self.subnets), tuple(self.security_groups))

    @model_validator(mode="after")
    def _fargate_size(self) -> AwsSettings:
        sizes = FARGATE_MEMORY.get(self.cpu)
        if sizes is None:
            raise ValueError(
                f"cpu {self.cpu} is not a Fargate size (one of {', '.join(map(str, FARGATE_MEMORY))})"
            )
        if self.memory not in sizes:
            steps = {b - a for a, b in itertools.pairwise(sizes)}
            offered = (
                f"{sizes[0]} to {sizes[-1]} in steps of {steps.pop()}"
                if len(steps) == 1
                else ", ".join(map(str, sizes))
            )
            raise ValueError(
                f"memory {self.memory} MiB is not offered with cpu {self.cpu} ({offered} MiB)"
            )
        return self


# The memory sizes (MiB) Fargate offers with each CPU size (Linux tasks).
FARGATE_MEMORY: dict[int, list[int]] = {
    256: [512, 1024, 2048],
    512: list(range(1024, 4096 + 1, 1024)),
    1024: list(range(2048, 8192 + 1, 1024)),
    2048: list(range(4096, 16384 + 1, 1024)),
    4096: list(range(8192, 30720 + 1, 1024)),
    8192: list(range(16384, 61440 + 1, 4096)),
    16384: list(range(32768, 122880 + 1, 8192)),
}


@dataclass(frozen=True)
class Network:
    """Where tasks run: ``awsvpcConfiguration``'s subnets and security groups."""

    subnets: Sequence[str]
    security_groups: Sequence[str] = ()
    public_ip: bool = False


TAG_APP, TAG_ENV = "shipyard:app", "shipyard:env"
_ELB_NAME_MAX = 32


@dataclass(frozen=True)
class AwsNames:
    """The names of an environment's resources on AWS, from its app and environment names."""

    app: str
    environment: str

    @property
    def stem(self) -> str:
        return f"shipyard-{self.app}-{self.environment}"

    @property
    def cluster(self) -> str:
        return self.stem

    @property
    def repository(self) -> str:
        return f"shipyard/{self.app}/{self.environment}"

    @property
    def log_group(self) -> str:
        return f"/shipyard/{self.app}/{self.environment}"

    @property
    def execution_role(self) -> str:
        return f"{self.stem}-execution"

    @property
    def secret_prefix(self) -> str:
        return f"shipyard/{self.app}/{self.environment}/"

    @property
    def family(self) -> str:
        """The task definition family of the app's tasks."""
        return self.stem

    def service(self, slot: str) -> str:
        """The ECS service running ``slot``'s tasks (blue or green)."""
        return f"{self.stem}-{slot}"

    def target_group(self, slot: str) -> str:
        """``slot``'s ALB target group (see ``_elb_name``)."""
        return self._elb_name(slot)

    @property
    def load_balancer(self) -> str:
        return self._elb_name("")

    def _elb_name(self, suffix: str) -> str:
        """At most 32 characters, as ELB allows: a long name is cut and keeps a hash of the
        whole, so two environments never share one."""
        name = f"{self.stem}-{suffix}" if suffix else self.stem
        if len(name) <= _ELB_NAME_MAX:
            return name
        digest = hashlib.sha256(self.stem.encode()).hexdigest()[:6]
        room = _ELB_NAME_MAX - len(digest) - 1 - (len(suffix) + 1 if suffix else 0)
        head = self.stem[:room].rstrip("-")
        return f"{head}-{digest}-{suffix}" if suffix else f"{head}-{digest}"

    @property
    def database(self) -> str:
        """The RDS instance, its subnet group and its parameter group."""
        return self.stem

    def secret(self, key: str) -> str:
        return f"{self.secret_prefix}{key}"

    def tags(self, extra: dict[str, str]) -> dict[str, str]:
        """Every resource's tags: the operator's, then shipyard's own (which always win)."""
        return {**extra, TAG_APP: self.app, TAG_ENV: self.environment}

    def owns(self, tags: dict[str, str]) -> bool:
        """Whether a resource carrying ``tags`` is this environment's (shipyard created it)."""
        return tags.get(TAG_APP) == self.app and tags.get(TAG_ENV) == self.environment
