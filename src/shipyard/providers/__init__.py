"""Providers: where and how an environment runs.

``docker`` is the universal one (a local engine, a VPS, bare metal, any cloud VM). Managed
platforms plug in here with the same protocol, imported lazily behind extras.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any, Protocol

from shipyard.config import Config
from shipyard.database import MigrationState
from shipyard.deploy import (
    DeployOptions,
    DeployResult,
    OperationContext,
    PlanStep,
    RollbackOptions,
    RotateOptions,
)
from shipyard.errors import ConfigError, Issue
from shipyard.hosts import Host
from shipyard.providers.docker import (
    DatabaseOperations,
    Destroyed,
    DockerProvider,
    PruneResult,
    RestoreResult,
    SnapshotFiles,
    Status,
    proxy_ports,
    taken_ports,
)
from shipyard.state import Maintenance, StateStore

__all__ = [
    "PROVIDERS",
    "DatabaseOperations",
    "Destroyed",
    "DockerProvider",
    "PlanStep",
    "Provider",
    "PruneResult",
    "RestoreResult",
    "SnapshotFiles",
    "Status",
    "get_provider",
    "proxy_ports",
    "state_store",
    "taken_ports",
]


class Provider(Protocol):
    name: str

    def preflight(self, config: Config) -> str:
        """The target as every operation of ``config`` needs it (what was found), or raises;
        changes nothing."""
        ...

    def provision(self, ctx: OperationContext) -> list[str]: ...

    def deploy(self, ctx: OperationContext, options: DeployOptions) -> DeployResult: ...

    def rollback(self, ctx: OperationContext, options: RollbackOptions) -> DeployResult: ...

    def repair(self, ctx: OperationContext, *, lock_wait: float = 0.0) -> str: ...

    def rotate_password(self, ctx: OperationContext, options: RotateOptions) -> DeployResult: ...

    def maintenance(
        self, ctx: OperationContext, maintenance: Maintenance | None, *, lock_wait: float = 0.0
    ) -> str:
        """Maintenance mode on (``maintenance``) or off: recorded in the state, then loaded into
        the proxy, under the environment's lock."""
        ...

    def app_logs(self, ctx: OperationContext, *, tail: int, since: str | None = None) -> str: ...

    def plan(self, ctx: OperationContext, options: DeployOptions) -> list[PlanStep]: ...

    def plan_rollback(self, ctx: OperationContext, options: RollbackOptions) -> list[PlanStep]: ...

    def health_check(self, ctx: OperationContext) -> Any: ...

    def render(self, ctx: OperationContext) -> dict[str, str]: ...

    def cleanup(
        self, ctx: OperationContext, *, volumes: bool, snapshots: bool = False
    ) -> Destroyed: ...

    def snapshot_files(self, ctx: OperationContext) -> SnapshotFiles | None: ...

    def database(self, ctx: OperationContext) -> DatabaseOperations: ...

    def migration_state(self, ctx: OperationContext) -> MigrationState: ...

    def watch_live(
        self, ctx: OperationContext, seconds: float, each: Callable[[dict[str, Any]], None]
    ) -> dict[str, Any]: ...

    def monitoring_up(self, ctx: OperationContext) -> str: ...

    def monitoring_status(self, ctx: OperationContext) -> Any: ...

    def monitoring_down(self, ctx: OperationContext, *, volumes: bool) -> str: ...


def _aws(host: Host) -> Provider:
    """The AWS provider, imported only for AWS environments (it imports boto3, the extra ``aws``)."""
    try:
        from shipyard.providers.aws import AwsProvider  # noqa: PLC0415
    except ImportError as exc:  # boto3 missing
        raise ConfigError(
            [
                Issue(
                    "shipyard.yml",
                    None,
                    None,
                    "provider",
                    f"provider aws needs {exc.name}: "
                    "install shipyard with the extra `aws` (pip install 'shipyard[aws]')",
                )
            ]
        ) from exc
    return AwsProvider(host)


def _gcp(host: Host) -> Provider:
    """The Google Cloud provider, imported only for its environments (it imports google-auth,
    the extra ``gcp``, when it first needs credentials)."""
    from shipyard.providers.gcp import GcpProvider  # noqa: PLC0415

    return GcpProvider(host)


def _digitalocean(host: Host) -> Provider:
    """The DigitalOcean provider (the Docker provider on a Droplet), imported on first use."""
    from shipyard.providers.digitalocean import DigitalOceanProvider  # noqa: PLC0415

    return DigitalOceanProvider(host)


PROVIDERS: dict[str, Callable[[Host], Provider]] = {
    "docker": DockerProvider,
    "aws": _aws,
    "gcp": _gcp,
    "digitalocean": _digitalocean,
}


def state_store(config: Config, host: Host, root: PurePosixPath) -> StateStore:
    """Where the environment's state and lock are kept: in S3 for AWS (``providers.aws.
    state_bucket``, else the account's default bucket), in Cloud Storage for Google Cloud
    (``providers.gcp.state_bucket``, else the project's default bucket); else under ``root`` on
    its host."""
    if config.environment.provider == "aws":
        from shipyard.providers.aws import state_store as in_s3  # noqa: PLC0415 — boto3

        return in_s3(config)
    if config.environment.provider == "gcp":
        from shipyard.providers.gcp import state_store as in_gcs  # noqa: PLC0415

        return in_gcs(config)
    return StateStore.on_host(host, root)


def get_provider(name: str, host: Host, *, config_file: str) -> Provider:
    factory = PROVIDERS.get(name)
    if factory is None:
        known = ", ".join(sorted(PROVIDERS))
        raise ConfigError(
            [
                Issue(
                    config_file,
                    None,
                    None,
                    "provider",
                    f"unknown provider {name!r} (known: {known})",
                )
            ]
        )
    return factory(host)
