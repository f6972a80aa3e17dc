"""An AWS environment's settings (``providers.aws``) and the names of what shipyard creates."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import Field

from shipyard.config import AwsSection, Config


class AwsSettings(AwsSection):
    """``providers.aws`` of an environment, its region resolved (the target's)."""

    region: str = Field(description="The AWS region (the target's aws://<region>).")

    @classmethod
    def of(cls, config: Config) -> AwsSettings:
        """The settings of ``config``'s environment (validated by the loader)."""
        section = dict(config.providers.get("aws") or {})
        section["region"] = config.environment.target.removeprefix("aws://")
        return cls.model_validate(section)

    def desired(self, environment: str) -> int:
        """How many tasks run the live version (``desired_count``, else 2 in production)."""
        if self.desired_count is not None:
            return self.desired_count
        return 2 if environment == "production" else 1


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
