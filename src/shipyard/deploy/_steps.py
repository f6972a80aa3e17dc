"""What a provider supplies to the pipeline: small capabilities, one per concern.

A provider implements each protocol its own way: the Docker provider starts a slot container
and switches Caddy; a platform with revisions (Cloud Run, ECS) starts a revision that takes no
traffic and moves the traffic to it. The pipeline (``deploy._pipeline``) names, for each phase,
the capability that does it; ``DeploySteps`` is all of them together.
"""

from __future__ import annotations

from typing import Protocol

from shipyard.build import Image
from shipyard.database import MigrationPlan, PasswordRotation, Snapshot
from shipyard.deploy._repair import RepairSteps
from shipyard.state import Release


class Delivery(Protocol):
    """The target as operations need it, and the app's image on it."""

    def preflight(self) -> str:
        """The target's engine or platform as operations need it (what was found, or raises);
        changes nothing."""
        ...

    def deliver(self, image: Image) -> str:
        """Make ``image`` available where the app runs (a stream, a registry push)."""
        ...


class Infrastructure(Protocol):
    """What every version of the app runs on: network, proxy or load balancer, database."""

    def ensure_infrastructure(self) -> str: ...

    def url(self) -> str:
        """Where the app answers."""
        ...

    def leftovers(self) -> list[str]:
        """What of the environment's stack exists on the target: after a failed first deploy,
        what it leaves behind."""
        ...


class Schema(Protocol):
    """The database's schema: what is pending, a snapshot before it changes, migrating."""

    def plan_migrations(self) -> MigrationPlan: ...

    def snapshot(self, release: Release) -> Snapshot: ...

    def migrate(self, release: Release) -> int | None: ...

    def schema_version(self) -> int | None: ...

    def newest_snapshot(self) -> str | None:
        """When the environment's newest snapshot was taken (ISO 8601; ``None``: none)."""
        ...


class Candidates(Protocol):
    """A version started beside the live one, taking no traffic until it is switched to (a
    slot container, a revision), and its health gate."""

    def start_slot(self, slot: str, release: Release) -> str: ...

    def remove_slot(self, slot: str) -> None: ...

    def gate(self, slot: str) -> str: ...


class Traffic(Protocol):
    """Which version takes the requests."""

    def switch(self, slot: str) -> str: ...

    def switch_back(self, slot: str) -> str:
        """Make ``slot`` (the version a switch replaced) live again: when it was stopped
        (``deploy.old_version: stop``) it is started and health-gated first."""
        ...

    def retire(self, slot: str) -> str:
        """Drain ``slot`` and stop it, keeping it for a rollback."""
        ...


class Observation(Protocol):
    """What the new version does once it takes traffic."""

    def verify(self, release: Release) -> str:
        """That the app answering through the proxy is ``release``."""
        ...

    def watch(self, slot: str, seconds: float) -> str:
        """Health checks and the error rate of ``slot`` (just switched to) for ``seconds``."""
        ...


class Retention(Protocol):
    """What is kept for rollbacks."""

    def prune(self, dropped: list[Release], kept: list[Release]) -> None: ...


class DeploySteps(
    Delivery,
    Infrastructure,
    Schema,
    Candidates,
    Traffic,
    Observation,
    Retention,
    RepairSteps,
    Protocol,
):
    """Every capability a deploy or a rollback calls (and those of the repair that comes first)."""


class Rotation(Protocol):
    """The database role's password."""

    def rotate_password(self, rotation: PasswordRotation, release: Release) -> str: ...

    def restore_password(self, rotation: PasswordRotation) -> str: ...


class RotationSteps(DeploySteps, Rotation, Protocol):
    """What `shipyard db rotate-password` calls (``run_rotate_password``)."""
