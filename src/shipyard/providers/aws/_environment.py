"""One AWS environment's parts, made from its config: settings, names, clients, and each
resource's manager; where its state is kept."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any

from shipyard import aws
from shipyard.config import Config, HttpCheck
from shipyard.errors import ExitCode, ShipyardError
from shipyard.providers.aws._database import RdsDatabase
from shipyard.providers.aws._infrastructure import AwsInfrastructure, Clients
from shipyard.providers.aws._network import AwsNetwork
from shipyard.providers.aws._settings import AwsNames, AwsSettings
from shipyard.providers.aws._snapshots import RdsSnapshots
from shipyard.providers.aws._tasks import TaskDefinitions
from shipyard.providers.aws._traffic import SLOTS, AwsTraffic
from shipyard.state import StateStore
from shipyard.state._s3 import (  # boto3: imported by AWS environments only
    DefaultBucket,
    S3State,
    default_bucket_name,
)

_STATE_PREFIX = "shipyard"


class NotOnAws(ShipyardError):
    """An operation the AWS provider does not run yet."""

    exit_code = ExitCode.USAGE


def state_store(config: Config) -> StateStore:
    """The environment's state and lock: ``shipyard/<app>/<environment>/`` in the state bucket,
    ``providers.aws.state_bucket`` or else the account's default (named when the state is first
    touched: making the store asks nothing of AWS)."""
    settings = AwsSettings.of(config)
    client = aws.client("s3", region=settings.region, endpoint_url=settings.endpoint_url)
    root = PurePosixPath(_STATE_PREFIX, config.app.name, config.environment.name)
    bucket = settings.state_bucket or DefaultBucket(
        aws.client("sts", region=settings.region, endpoint_url=settings.endpoint_url),
        settings.region,
    )
    return StateStore(S3State(client, bucket, root))


def state_location(settings: AwsSettings) -> str:
    """Where the state is kept, as ``check`` says it, offline: the default bucket's account is
    not looked up."""
    if settings.state_bucket is not None:
        return f"s3://{settings.state_bucket}"
    default = default_bucket_name("<account>", settings.region)
    return f"s3://{default} (the account's, created by the first deploy)"


class AwsEnvironment:
    """One environment's parts on AWS, from its config."""

    def __init__(self, config: Config, *, session: Any = None) -> None:
        self.config = config
        self.settings = AwsSettings.of(config)
        self.names = AwsNames(config.app.name, config.environment.name)
        self.clients = Clients(self.settings, session=session)

    @property
    def cluster(self) -> str:
        return self.settings.cluster or self.names.cluster

    def network(self) -> AwsNetwork:
        """The subnets and security groups (the operator's, or those shipyard creates)."""
        return AwsNetwork(
            self.names,
            self.settings,
            self.clients,
            port=self.config.app.port,
            database=self.settings.rds is not None,
            config_file=str(self.config.path),
        )

    def infrastructure(self, *, readable: Sequence[str] = ()) -> AwsInfrastructure:
        """The base resources; ``readable``: further secrets the tasks read (RDS's password)."""
        checks = [c for c in self.config.health.checks if isinstance(c, HttpCheck)]
        return AwsInfrastructure(
            self.names,
            self.settings,
            self.config.secrets.items(),
            self.clients,
            self.network(),
            port=self.config.app.port,
            health_path=checks[0].path if checks else "/health",
            config_file=str(self.config.path),
            readable=readable,
        )

    def database(self) -> RdsDatabase | None:
        rds, section = self.settings.rds, self.config.database
        if rds is None or section is None:
            return None
        return RdsDatabase(
            self.names,
            self.settings,
            rds,
            self.clients,
            self.network(),
            database=section.name,
            user=section.user,
        )

    def snapshots(self) -> RdsSnapshots:
        return RdsSnapshots(self.names, self.names.database, self.clients)

    def families(self) -> list[str]:
        """The task definition families of the environment: the app's, golang-migrate's and
        the tools' (psql for the extensions)."""
        return [self.names.family, f"{self.names.family}-migrate", f"{self.names.family}-tools"]

    def tasks(self) -> TaskDefinitions:
        return TaskDefinitions(self.names, self.settings, self.clients)

    def traffic(self) -> AwsTraffic | None:
        """The listener and the slots' target groups; ``None`` before the first deploy made them."""
        infrastructure = self.infrastructure()
        listener = infrastructure.listener()
        groups = infrastructure.target_groups()
        if listener is None or set(groups) != set(SLOTS):
            return None
        return AwsTraffic(self.names, self.cluster, listener, groups, self.clients)

    def load_balancer_dns(self) -> str | None:
        found = self.clients.find(
            "elbv2", "DescribeLoadBalancers", self.names.load_balancer,
            missing="LoadBalancerNotFound", Names=[self.names.load_balancer],
        )  # fmt: skip
        balancers = (found or {}).get("LoadBalancers", [])
        return str(balancers[0]["DNSName"]) if balancers else None
