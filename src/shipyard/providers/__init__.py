"""Providers: where and how an environment runs.

``docker`` is the universal one (a local engine, a VPS, bare metal, any cloud VM). Managed
platforms plug in here with the same protocol, imported lazily behind extras.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from shipyard.deploy import (
    DeployOptions,
    DeployResult,
    OperationContext,
    RollbackOptions,
    RotateOptions,
)
from shipyard.errors import ConfigError, Issue
from shipyard.hosts import Host
from shipyard.providers._database import DatabaseOperations, PruneResult, RestoreResult
from shipyard.providers._docker import DockerProvider, PlanStep, Status

__all__ = [
    "PROVIDERS",
    "DatabaseOperations",
    "DockerProvider",
    "PlanStep",
    "Provider",
    "PruneResult",
    "RestoreResult",
    "Status",
    "get_provider",
]


class Provider(Protocol):
    name: str

    def provision(self, ctx: OperationContext) -> list[str]: ...

    def deploy(self, ctx: OperationContext, options: DeployOptions) -> DeployResult: ...

    def rollback(self, ctx: OperationContext, options: RollbackOptions) -> DeployResult: ...

    def repair(self, ctx: OperationContext, *, lock_wait: float = 0.0) -> str: ...

    def rotate_password(self, ctx: OperationContext, options: RotateOptions) -> DeployResult: ...

    def app_logs(self, ctx: OperationContext, *, tail: int, since: str | None = None) -> str: ...

    def plan(self, ctx: OperationContext, options: DeployOptions) -> list[PlanStep]: ...

    def health_check(self, ctx: OperationContext) -> Any: ...

    def render(self, ctx: OperationContext) -> dict[str, str]: ...

    def cleanup(self, ctx: OperationContext, *, volumes: bool) -> list[str]: ...

    def database(self, ctx: OperationContext) -> DatabaseOperations: ...


PROVIDERS: dict[str, Callable[[Host], Provider]] = {"docker": DockerProvider}


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
